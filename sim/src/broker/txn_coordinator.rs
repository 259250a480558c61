//! The transaction coordinator (interim: answers NOT_COORDINATOR until the
//! coordinator lands in the next commits).

use std::rc::Rc;

use eddyline_engine::transport::{ErrorCode, TopicPartition};

use crate::broker::Broker;
use crate::internal::{InternalResponse, TxnMarker};
use crate::protocol::{ProduceBatch, ProducerEpoch, ProducerId, Request, Response};

#[derive(Default)]
pub(crate) struct TxnCoordinator {}

pub(crate) fn start_loading(_broker: &Rc<Broker>, _partition: i32, _leader_epoch: i32) {}

pub(crate) fn unload(_broker: &Rc<Broker>, _partition: i32) {}

pub(crate) async fn timeout_checker(_broker: Rc<Broker>) {}

pub(crate) async fn verify_produce(
    _broker: &Rc<Broker>,
    _transactional_id: Option<&str>,
    batches: &[ProduceBatch],
) -> Vec<Option<ErrorCode>> {
    vec![None; batches.len()]
}

pub(crate) async fn handle(_broker: &Rc<Broker>, request: Request) -> Response {
    let error = Some(ErrorCode::NotCoordinator);
    match request {
        Request::InitProducerId { .. } => Response::InitProducerId {
            error,
            producer_id: -1,
            producer_epoch: -1,
        },
        Request::AddPartitionsToTxn { partitions, .. } => Response::AddPartitionsToTxn {
            results: partitions.into_iter().map(|tp| (tp, error)).collect(),
        },
        Request::AddOffsetsToTxn { .. } => Response::AddOffsetsToTxn { error },
        Request::EndTxn { .. } => Response::EndTxn { error },
        other => unreachable!("not a transaction request: {other:?}"),
    }
}

pub(crate) async fn handle_write_markers(
    _broker: &Rc<Broker>,
    markers: Vec<TxnMarker>,
) -> InternalResponse {
    InternalResponse::WriteTxnMarkers {
        results: markers
            .into_iter()
            .map(|m| {
                (
                    m.producer_id,
                    m.partitions
                        .into_iter()
                        .map(|tp| (tp, Some(ErrorCode::NotLeaderOrFollower)))
                        .collect(),
                )
            })
            .collect(),
    }
}

pub(crate) fn handle_verify(
    _broker: &Rc<Broker>,
    _transactional_id: &str,
    _producer_id: ProducerId,
    _producer_epoch: ProducerEpoch,
    partitions: Vec<TopicPartition>,
) -> InternalResponse {
    InternalResponse::VerifyTxnPartitions {
        results: partitions
            .into_iter()
            .map(|tp| (tp, Some(ErrorCode::NotCoordinator)))
            .collect(),
    }
}
