//! Broker-to-broker and broker-to-controller messages (replica fetches use
//! the public `Fetch` with a replica id). Owned by the broker model.

use serde::{Deserialize, Serialize};

/// A request between brokers or to the controller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum InternalRequest {}

/// A response between brokers or from the controller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum InternalResponse {}
