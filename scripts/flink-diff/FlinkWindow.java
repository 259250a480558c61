// Runs Apache Flink's own event-time windowing (WindowOperator,
// EventTimeTrigger, MergingWindowSet) over an `eddy window` input and prints
// the same JSON lines as `eddy window` (docs/eddy-window.md), so that the two can be
// compared firing for firing.
//
// Usage: java -cp <flink jars>:<dir> FlinkWindow SPEC.json EVENTS.jsonl OUT.jsonl [SPEC EVENTS OUT]...
//
// - One keyed stream at parallelism 1; watermarks are generated per record
//   (a WatermarkGenerator that emits max_ts - D - 1 on every event, no
//   periodic emission), so each record is judged against the watermark from
//   before it, and the watermark it raised fires windows, as in Eddyline.
// - The window uses Flink's EventTimeTrigger, wrapped only to record whether
//   a firing came from an element (late_update) or a timer (on_time).
// - step: for a late_update, the index of the element that fired it; for an
//   on_time firing, the index of the event whose watermark equals the
//   operator's current watermark (each emitted watermark is a new value, so
//   it names exactly one event), or the number of events for Long.MAX_VALUE;
//   for a late record, its own index. watermark: the operator's current
//   watermark for firings; for late records, the watermark before them.

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkOutput;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.typeinfo.TypeHint;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.java.tuple.Tuple4;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.EventTimeSessionWindows;
import org.apache.flink.streaming.api.windowing.assigners.SlidingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.assigners.WindowAssigner;
import org.apache.flink.streaming.api.windowing.time.Time;
import org.apache.flink.streaming.api.windowing.triggers.EventTimeTrigger;
import org.apache.flink.streaming.api.windowing.triggers.Trigger;
import org.apache.flink.streaming.api.windowing.triggers.TriggerResult;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.CloseableIterator;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

public final class FlinkWindow {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** (step, key, ts, value) */
    private static final TypeInformation<Tuple4<Integer, String, Long, Long>> EVENT =
            TypeInformation.of(new TypeHint<Tuple4<Integer, String, Long, Long>>() {});

    public static void main(String[] args) throws Exception {
        if (args.length == 0 || args.length % 3 != 0) {
            System.err.println("usage: FlinkWindow SPEC.json EVENTS.jsonl OUT.jsonl [...]");
            System.exit(2);
        }
        for (int i = 0; i < args.length; i += 3) {
            List<String> lines = run(Path.of(args[i]), Path.of(args[i + 1]));
            Files.write(Path.of(args[i + 2]), lines, StandardCharsets.UTF_8);
        }
    }

    /** Eddyline's watermark: max_ts - D - 1 (saturating), on every event. */
    static final class PerRecordWatermarks implements WatermarkGenerator<Tuple4<Integer, String, Long, Long>> {
        private final long outOfOrderness;
        private long maxTs = Long.MIN_VALUE;
        private boolean seen = false;

        PerRecordWatermarks(long outOfOrderness) {
            this.outOfOrderness = outOfOrderness;
        }

        @Override
        public void onEvent(Tuple4<Integer, String, Long, Long> event, long timestamp, WatermarkOutput output) {
            maxTs = seen ? Math.max(maxTs, timestamp) : timestamp;
            seen = true;
            output.emitWatermark(new Watermark(watermarkFor(maxTs, outOfOrderness)));
        }

        @Override
        public void onPeriodicEmit(WatermarkOutput output) {}
    }

    static long watermarkFor(long maxTs, long outOfOrderness) {
        long candidate = maxTs - outOfOrderness - 1;
        // Saturate instead of wrapping, as Eddyline does.
        boolean wrapped = maxTs < 0 && candidate > maxTs;
        return wrapped ? Long.MIN_VALUE : candidate;
    }

    /** Flink's EventTimeTrigger, recording what caused each firing. */
    static final class RecordingTrigger extends Trigger<Object, TimeWindow> {
        static volatile boolean lastFiringByElement;
        static volatile int lastElementStep;
        private final EventTimeTrigger inner = EventTimeTrigger.create();

        @Override
        @SuppressWarnings("unchecked")
        public TriggerResult onElement(Object element, long timestamp, TimeWindow window, TriggerContext ctx) throws Exception {
            TriggerResult result = inner.onElement(element, timestamp, window, ctx);
            if (result.isFire()) {
                lastFiringByElement = true;
                lastElementStep = ((Tuple4<Integer, String, Long, Long>) element).f0;
            }
            return result;
        }

        @Override
        public TriggerResult onEventTime(long time, TimeWindow window, TriggerContext ctx) {
            TriggerResult result = inner.onEventTime(time, window, ctx);
            if (result.isFire()) {
                lastFiringByElement = false;
            }
            return result;
        }

        @Override
        public TriggerResult onProcessingTime(long time, TimeWindow window, TriggerContext ctx) throws Exception {
            return inner.onProcessingTime(time, window, ctx);
        }

        @Override
        public boolean canMerge() {
            return true;
        }

        @Override
        public void onMerge(TimeWindow window, OnMergeContext ctx) {
            inner.onMerge(window, ctx);
        }

        @Override
        public void clear(TimeWindow window, TriggerContext ctx) throws Exception {
            inner.clear(window, ctx);
        }
    }

    static final class Summarize
            extends ProcessWindowFunction<Tuple4<Integer, String, Long, Long>, String, String, TimeWindow> {
        private final long[] watermarkAfter;

        Summarize(long[] watermarkAfter) {
            this.watermarkAfter = watermarkAfter;
        }

        @Override
        public void process(String key, Context context, Iterable<Tuple4<Integer, String, Long, Long>> elements,
                Collector<String> out) {
            long count = 0;
            long sum = 0;
            long minTs = Long.MAX_VALUE;
            long maxTs = Long.MIN_VALUE;
            for (Tuple4<Integer, String, Long, Long> element : elements) {
                count += 1;
                sum = Math.addExact(sum, element.f3);
                minTs = Math.min(minTs, element.f2);
                maxTs = Math.max(maxTs, element.f2);
            }
            long watermark = context.currentWatermark();
            boolean byElement = RecordingTrigger.lastFiringByElement;
            int step = byElement ? RecordingTrigger.lastElementStep : stepOfWatermark(watermark);
            ObjectNode line = JSON.createObjectNode();
            line.put("key", key);
            line.put("window_start", context.window().getStart());
            line.put("window_end", context.window().getEnd());
            line.put("count", count);
            line.put("sum", sum);
            line.put("min_ts", minTs);
            line.put("max_ts", maxTs);
            line.put("kind", byElement ? "late_update" : "on_time");
            line.put("step", step);
            line.put("watermark", watermark);
            out.collect(line.toString());
        }

        private int stepOfWatermark(long watermark) {
            if (watermark == Long.MAX_VALUE) {
                return watermarkAfter.length;
            }
            for (int step = 0; step < watermarkAfter.length; step++) {
                if (watermarkAfter[step] == watermark) {
                    return step;
                }
            }
            throw new IllegalStateException("no event raised the watermark to " + watermark);
        }
    }

    static final class LateToJson extends ProcessFunction<Tuple4<Integer, String, Long, Long>, String> {
        private final long[] watermarkBefore;

        LateToJson(long[] watermarkBefore) {
            this.watermarkBefore = watermarkBefore;
        }

        @Override
        public void processElement(Tuple4<Integer, String, Long, Long> event, Context context, Collector<String> out) {
            ObjectNode late = JSON.createObjectNode();
            late.put("key", event.f1);
            late.put("ts", event.f2);
            late.put("value", event.f3);
            ObjectNode line = JSON.createObjectNode();
            line.set("late", late);
            line.put("step", event.f0);
            line.put("watermark", watermarkBefore[event.f0]);
            out.collect(line.toString());
        }
    }

    static List<String> run(Path specPath, Path eventsPath) throws Exception {
        JsonNode spec = JSON.readTree(Files.readString(specPath));
        JsonNode window = spec.get("window");
        long outOfOrderness = spec.get("out_of_orderness").asLong();
        long allowedLateness = spec.get("allowed_lateness").asLong();

        List<Tuple4<Integer, String, Long, Long>> events = new ArrayList<>();
        for (String text : Files.readAllLines(eventsPath, StandardCharsets.UTF_8)) {
            if (text.isBlank()) {
                continue;
            }
            JsonNode event = JSON.readTree(text);
            events.add(Tuple4.of(events.size(), event.get("key").asText(), event.get("ts").asLong(),
                    event.get("value").asLong()));
        }
        long[] watermarkBefore = new long[events.size()];
        long[] watermarkAfter = new long[events.size()];
        long watermark = Long.MIN_VALUE;
        long maxTs = Long.MIN_VALUE;
        for (int step = 0; step < events.size(); step++) {
            watermarkBefore[step] = watermark;
            maxTs = step == 0 ? events.get(step).f2 : Math.max(maxTs, events.get(step).f2);
            watermark = Math.max(watermark, watermarkFor(maxTs, outOfOrderness));
            watermarkAfter[step] = watermark;
        }

        WindowAssigner<Object, TimeWindow> assigner;
        String kind = window.get("kind").asText();
        switch (kind) {
            case "tumbling": {
                long size = window.get("size").asLong();
                long offset = Math.floorMod(window.path("offset").asLong(0), size);
                assigner = TumblingEventTimeWindows.of(Time.milliseconds(size), Time.milliseconds(offset));
                break;
            }
            case "sliding": {
                long size = window.get("size").asLong();
                long slide = window.get("slide").asLong();
                long offset = Math.floorMod(window.path("offset").asLong(0), slide);
                assigner = SlidingEventTimeWindows.of(Time.milliseconds(size), Time.milliseconds(slide),
                        Time.milliseconds(offset));
                break;
            }
            case "session":
                assigner = EventTimeSessionWindows.withGap(Time.milliseconds(window.get("gap").asLong()));
                break;
            default:
                throw new IllegalArgumentException("unknown window kind " + kind);
        }

        StreamExecutionEnvironment env = StreamExecutionEnvironment.createLocalEnvironment(1);
        env.getConfig().setAutoWatermarkInterval(0);
        OutputTag<Tuple4<Integer, String, Long, Long>> lateTag =
                new OutputTag<Tuple4<Integer, String, Long, Long>>("late") {};
        DataStream<Tuple4<Integer, String, Long, Long>> input = env.fromCollection(events, EVENT)
                .assignTimestampsAndWatermarks(WatermarkStrategy
                        .<Tuple4<Integer, String, Long, Long>>forGenerator(context -> new PerRecordWatermarks(outOfOrderness))
                        .withTimestampAssigner((event, previous) -> event.f2));
        SingleOutputStreamOperator<String> firings = input
                .keyBy(event -> event.f1)
                .window(assigner)
                .allowedLateness(Time.milliseconds(allowedLateness))
                .sideOutputLateData(lateTag)
                .trigger(new RecordingTrigger())
                .process(new Summarize(watermarkAfter));
        DataStream<String> late = firings.getSideOutput(lateTag).process(new LateToJson(watermarkBefore));

        List<String> lines = new ArrayList<>();
        try (CloseableIterator<String> results = firings.union(late).executeAndCollect("flink-diff " + eventsPath)) {
            results.forEachRemaining(lines::add);
        }
        return lines;
    }
}
