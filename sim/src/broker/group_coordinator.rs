//! The group coordinator (interim: answers NOT_COORDINATOR until the
//! coordinator lands in the next commits).

use std::rc::Rc;

use eddyline_engine::transport::ErrorCode;

use crate::broker::Broker;
use crate::protocol::{Request, Response};

#[derive(Default)]
pub(crate) struct GroupCoordinator {}

pub(crate) fn start_loading(_broker: &Rc<Broker>, _partition: i32, _leader_epoch: i32) {}

pub(crate) fn unload(_broker: &Rc<Broker>, _partition: i32) {}

pub(crate) async fn session_checker(_broker: Rc<Broker>) {}

pub(crate) async fn handle(_broker: &Rc<Broker>, request: Request) -> Response {
    let error = Some(ErrorCode::NotCoordinator);
    match request {
        Request::JoinGroup { member_id, .. } => Response::JoinGroup {
            error,
            generation_id: -1,
            protocol_name: None,
            leader: String::new(),
            member_id,
            members: Vec::new(),
        },
        Request::SyncGroup { .. } => Response::SyncGroup {
            error,
            assignment: Vec::new(),
        },
        Request::Heartbeat { .. } => Response::Heartbeat { error },
        Request::LeaveGroup { .. } => Response::LeaveGroup { error },
        Request::OffsetCommit { offsets, .. } => Response::OffsetCommit {
            results: offsets.into_iter().map(|(tp, _)| (tp, error)).collect(),
        },
        Request::OffsetFetch { .. } => Response::OffsetFetch {
            error,
            offsets: Vec::new(),
        },
        Request::TxnOffsetCommit { offsets, .. } => Response::TxnOffsetCommit {
            results: offsets.into_iter().map(|(tp, _)| (tp, error)).collect(),
        },
        other => unreachable!("not a group request: {other:?}"),
    }
}
