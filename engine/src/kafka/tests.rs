//! Tests of the Kafka transport that need its internals.
