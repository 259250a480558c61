//! Producer ids: a broker hands them out from a block the controller
//! allocated to it (Kafka's `ProducerIdManager`), asking for the next block
//! when this one is used up.

use eddyline_engine::transport::ErrorCode;

use crate::broker::Broker;
use crate::config::{CONTROLLER_HOST, CONTROLLER_PORT};
use crate::internal::{InternalRequest, InternalResponse};
use crate::protocol::{Request, Response};
use crate::rpc::Connection;

/// Takes a producer id from this broker's block, fetching a new block from
/// the controller when it is used up.
pub(crate) async fn allocate_producer_id(broker: &Broker) -> Result<i64, ErrorCode> {
    {
        let mut state = broker.state.borrow_mut();
        let (next, end) = state.producer_ids;
        if next < end {
            state.producer_ids.0 += 1;
            return Ok(next);
        }
    }
    let mut connection =
        Connection::with_reconnects(CONTROLLER_HOST, CONTROLLER_PORT, broker.reconnects.clone());
    let request = Request::Internal(InternalRequest::AllocateProducerIds {
        broker_id: broker.id,
    });
    match connection
        .call(request, broker.config.inter_broker_request_timeout_ms)
        .await
    {
        Ok(Response::Internal(InternalResponse::AllocateProducerIds {
            error: None,
            first_producer_id,
            count,
        })) if count > 0 => {
            let mut state = broker.state.borrow_mut();
            state.producer_ids = (first_producer_id + 1, first_producer_id + count);
            Ok(first_producer_id)
        }
        _ => Err(ErrorCode::CoordinatorLoadInProgress),
    }
}
