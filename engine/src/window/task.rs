//! A window task: a watermark tracker over the task's inputs, and the
//! window operator it drives.

use std::fmt::Debug;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::operator::{OperatorState, OperatorStateRef, WindowConfig, WindowOperator};
use super::output::Output;
use super::state::corrupt;
use crate::aggregate::Aggregator;
use crate::error::Result;
use crate::record::Record;
use crate::snapshot::{self, SnapshotKind};
use crate::time::EventTime;
use crate::watermark::{TrackerState, WatermarkConfig, WatermarkTracker};

#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "I: Serialize, Acc: Serialize"))]
#[serde(bound(deserialize = "I: DeserializeOwned, Acc: DeserializeOwned"))]
struct TaskState<I, Acc> {
    watermarks: TrackerState<I>,
    operator: OperatorState<Acc>,
}

/// A [`TaskState`] borrowing the operator's state: what a snapshot encodes.
#[derive(Serialize)]
struct TaskStateRef<'a, I, Acc> {
    watermarks: TrackerState<I>,
    operator: OperatorStateRef<'a, Acc>,
}

/// Watermarks and windows of one task, over inputs named by `I` (for
/// example partition numbers).
///
/// Per record: processing time first (inputs may go idle and fire windows),
/// then the record is judged against the task watermark from before it,
/// then the watermark it raised fires windows (the order of outputs in
/// `docs/semantics.md`).
pub struct WindowTask<I, V, A: Aggregator<V>> {
    tracker: WatermarkTracker<I>,
    operator: WindowOperator<V, A>,
}

impl<I, V, A> WindowTask<I, V, A>
where
    I: Ord + Clone + Debug + Serialize + DeserializeOwned,
    A: Aggregator<V>,
{
    pub fn new(
        watermarks: WatermarkConfig,
        windows: WindowConfig,
        aggregator: A,
        inputs: impl IntoIterator<Item = I>,
        now: Duration,
    ) -> Result<Self> {
        Ok(Self {
            tracker: WatermarkTracker::new(watermarks, inputs, now)?,
            operator: WindowOperator::new(windows, aggregator),
        })
    }

    pub fn watermark(&self) -> EventTime {
        self.tracker.watermark()
    }

    pub fn tracker(&self) -> &WatermarkTracker<I> {
        &self.tracker
    }

    pub fn operator(&self) -> &WindowOperator<V, A> {
        &self.operator
    }

    fn check_aligned(&self) {
        assert_eq!(
            self.operator.watermark(),
            self.tracker.watermark(),
            "the operator runs at the task watermark"
        );
    }

    /// Processing time has reached `now`: idle inputs may raise the
    /// watermark and fire windows.
    pub fn on_processing_time(
        &mut self,
        now: Duration,
        out: &mut Vec<Output<V, A::Output>>,
    ) -> Result<()> {
        let watermark = self.tracker.on_processing_time(now);
        self.operator.advance_watermark(watermark, out)?;
        self.check_aligned();
        Ok(())
    }

    /// One record from `input` at processing time `now`. A record refused
    /// with [`crate::Error::Invalid`] (unknown input, unrepresentable
    /// windows) changes nothing but the processing time.
    pub fn process(
        &mut self,
        input: &I,
        record: Record<V>,
        now: Duration,
        out: &mut Vec<Output<V, A::Output>>,
    ) -> Result<()> {
        self.on_processing_time(now, out)?;
        self.tracker.check_input(input)?;
        self.operator.check_record(&record)?;
        let ts = record.ts;
        self.operator.process_checked(record, out)?;
        let watermark = self.tracker.observe(input, ts, now)?;
        self.operator.advance_watermark(watermark, out)?;
        self.check_aligned();
        Ok(())
    }

    /// End of a bounded input: the watermark goes to `i64::MAX`.
    pub fn finish(&mut self, out: &mut Vec<Output<V, A::Output>>) -> Result<()> {
        self.tracker.finish();
        self.operator.finish(out)?;
        self.check_aligned();
        Ok(())
    }

    /// All task state (per-input watermarks and idleness, window contents,
    /// timers, counters) at processing time `now`, in the versioned
    /// snapshot encoding.
    pub fn snapshot(&self, now: Duration) -> Result<Vec<u8>> {
        let operator = self.operator.state_ref()?;
        let size_hint = operator.size_hint();
        let state = TaskStateRef {
            watermarks: self.tracker.to_state(now),
            operator,
        };
        Ok(snapshot::encode(
            SnapshotKind::WindowTask,
            &state,
            size_hint,
        ))
    }

    /// A task continuing exactly where the snapshotted one stopped, at
    /// processing time `now`.
    pub fn restore(
        watermarks: WatermarkConfig,
        windows: WindowConfig,
        aggregator: A,
        bytes: &[u8],
        now: Duration,
    ) -> Result<Self> {
        let state: TaskState<I, A::Acc> = snapshot::decode(SnapshotKind::WindowTask, bytes)?;
        let tracker = WatermarkTracker::from_state(watermarks, state.watermarks, now)?;
        let operator = WindowOperator::from_state(windows, aggregator, state.operator)?;
        if operator.watermark() != tracker.watermark() {
            return Err(corrupt(format!(
                "operator watermark {} differs from the task watermark {}",
                operator.watermark(),
                tracker.watermark()
            )));
        }
        Ok(Self { tracker, operator })
    }
}
