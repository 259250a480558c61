//! The only `unsafe` code in Eddyline: two librdkafka calls that rdkafka
//! does not wrap safely.
//!
//! The seam's [`GroupMetadata`] is a plain value (group id, generation,
//! member id, instance id) so that the engine can hold it, log it and hand it
//! to any producer. rdkafka only offers an opaque `ConsumerGroupMetadata`
//! that can neither be read nor built from fields. librdkafka can do both
//! (`rd_kafka_consumer_group_metadata_{generation_id,member_id,...}` and
//! `rd_kafka_consumer_group_metadata_new_with_genid`), so this module calls
//! it directly:
//!
//! - [`consumer_group_metadata`] reads a consumer's current metadata;
//! - [`send_offsets_to_transaction`] builds the native metadata from a
//!   [`GroupMetadata`] and calls `rd_kafka_send_offsets_to_transaction`, so
//!   the broker fences a stale generation exactly as for a Java client
//!   (KIP-447).
//!
//! Every pointer created here is destroyed here; no pointer outlives a call.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char};

use rdkafka::TopicPartitionList;
use rdkafka::bindings as rdsys;
use rdkafka::client::Client;
use rdkafka::error::RDKafkaErrorCode;

use crate::transport::GroupMetadata;

/// What librdkafka said about a failed transactional call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NativeError {
    pub code: RDKafkaErrorCode,
    pub message: String,
    pub fatal: bool,
    pub retriable: bool,
    pub txn_requires_abort: bool,
}

/// Copies a C string owned by librdkafka; `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for this call.
unsafe fn copy_c_string(ptr: *const c_char) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    Some(
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The consumer's current group metadata, read from librdkafka: `None` for a
/// consumer without a group.
pub(crate) fn consumer_group_metadata<C: rdkafka::ClientContext>(
    client: &Client<C>,
) -> Option<GroupMetadata> {
    let rk = client.native_ptr();
    // SAFETY: `rk` is the live handle of `client`, borrowed for this call.
    // `rd_kafka_consumer_group_metadata` returns a new object (or NULL for a
    // consumer without group.id) that we own; its accessors return pointers
    // into it, copied before it is destroyed exactly once below.
    unsafe {
        let cgm = rdsys::rd_kafka_consumer_group_metadata(rk);
        if cgm.is_null() {
            return None;
        }
        let group_id = copy_c_string(rdsys::rd_kafka_consumer_group_metadata_group_id(cgm));
        let member_id = copy_c_string(rdsys::rd_kafka_consumer_group_metadata_member_id(cgm));
        let group_instance_id = copy_c_string(
            rdsys::rd_kafka_consumer_group_metadata_group_instance_id(cgm),
        );
        let generation_id = rdsys::rd_kafka_consumer_group_metadata_generation_id(cgm);
        rdsys::rd_kafka_consumer_group_metadata_destroy(cgm);
        Some(GroupMetadata {
            group_id: group_id.unwrap_or_default(),
            generation_id,
            member_id: member_id.unwrap_or_default(),
            group_instance_id,
        })
    }
}

fn c_string(what: &str, value: &str) -> Result<CString, NativeError> {
    CString::new(value).map_err(|_| NativeError {
        code: RDKafkaErrorCode::InvalidArgument,
        message: format!("{what} contains a NUL byte"),
        fatal: false,
        retriable: false,
        txn_requires_abort: false,
    })
}

/// `rd_kafka_send_offsets_to_transaction` with consumer-group metadata built
/// from `group`. Blocks up to `timeout_ms`: call it off the async runtime.
pub(crate) fn send_offsets_to_transaction<C: rdkafka::ClientContext>(
    client: &Client<C>,
    offsets: &TopicPartitionList,
    group: &GroupMetadata,
    timeout_ms: i32,
) -> Result<(), NativeError> {
    let group_id = c_string("group id", &group.group_id)?;
    let member_id = c_string("member id", &group.member_id)?;
    let instance_id = match &group.group_instance_id {
        Some(id) => Some(c_string("group instance id", id)?),
        None => None,
    };
    let rk = client.native_ptr();
    // SAFETY: `rk` is the live producer handle of `client`; `offsets.ptr()`
    // is valid while `offsets` is borrowed; the C strings outlive the call
    // (librdkafka copies them into the metadata object). The metadata object
    // and the returned error object are ours and destroyed exactly once.
    unsafe {
        let cgm = rdsys::rd_kafka_consumer_group_metadata_new_with_genid(
            group_id.as_ptr(),
            group.generation_id,
            member_id.as_ptr(),
            instance_id
                .as_ref()
                .map_or(std::ptr::null(), |id| id.as_ptr()),
        );
        assert!(
            !cgm.is_null(),
            "librdkafka could not allocate consumer group metadata"
        );
        let error = rdsys::rd_kafka_send_offsets_to_transaction(rk, offsets.ptr(), cgm, timeout_ms);
        rdsys::rd_kafka_consumer_group_metadata_destroy(cgm);
        if error.is_null() {
            return Ok(());
        }
        let native = NativeError {
            code: RDKafkaErrorCode::from(rdsys::rd_kafka_error_code(error)),
            message: copy_c_string(rdsys::rd_kafka_error_string(error)).unwrap_or_default(),
            fatal: rdsys::rd_kafka_error_is_fatal(error) != 0,
            retriable: rdsys::rd_kafka_error_is_retriable(error) != 0,
            txn_requires_abort: rdsys::rd_kafka_error_txn_requires_abort(error) != 0,
        };
        rdsys::rd_kafka_error_destroy(error);
        Err(native)
    }
}
