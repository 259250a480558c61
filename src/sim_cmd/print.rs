//! What `eddy sim run` prints for one seed.

use std::collections::BTreeSet;

use eddyline_scenarios::checker::{Anomaly, AnomalyKind, first_placed};
use eddyline_scenarios::verdict::{SeedVerdict, repro_command};
use eddyline_sim::trace::TraceFocus;

use super::Loaded;

/// How many anomalies of one kind are printed.
const ANOMALIES_PER_KIND: usize = 3;
/// How many records of one anomaly are printed.
const RECORDS_PER_ANOMALY: usize = 8;
/// How many trace events end the report.
const TRACE_LINES: usize = 30;

/// The whole report of one seed, on stdout.
pub fn seed_report(loaded: &Loaded, verdict: &SeedVerdict) {
    let report = &verdict.report;
    let mutant = verdict
        .mutant
        .map_or(String::new(), |m| format!(", mutant {m}"));
    println!("scenario {}, seed {}{mutant}", loaded.path, verdict.seed);
    println!("settings:");
    for (name, value) in &report.settings {
        println!("  {name} = {value}");
    }
    println!("faults applied: {}", report.faults.len());
    for fault in &report.faults {
        println!("  at {fault}");
    }
    println!(
        "run: {} ms simulated, {} trace events, trace hash {:#018x}{}",
        report.elapsed_ms,
        report.trace.events,
        report.trace.hash,
        if verdict.determinism_checked {
            " (run twice: hashes checked)"
        } else {
            ""
        }
    );
    println!("worker: {:?}", report.stats);
    println!("worker stops: {}", report.stops.len());
    for (host, why) in &report.stops {
        println!("  {host}: {why}");
    }
    for why in &report.feeder_failures {
        println!("feeder: replaced its producer and sent the unacknowledged records again: {why}");
    }
    print_verdict(verdict);
    if !verdict.clean() {
        print_trace(verdict);
    }
    println!(
        "repro: {}",
        repro_command(&loaded.path, verdict.seed, verdict.mutant)
    );
}

/// The trace around the first anomaly that has a place in it (marked
/// `>>`), else the end of the trace.
fn print_trace(verdict: &SeedVerdict) {
    let trace = &verdict.report.trace;
    let anomaly = first_placed(&verdict.anomalies);
    if let (Some(focus), Some(anomaly)) = (&trace.focus, anomaly) {
        println!(
            "trace around the first {}: {}",
            anomaly.kind,
            place(anomaly)
        );
        for (index, line) in focus.lines.iter().enumerate() {
            let mark = if index == focus.hit { ">>" } else { "  " };
            println!("{mark}{line}");
        }
        return;
    }
    println!(
        "trace (last {} events):",
        trace.excerpt.len().min(TRACE_LINES)
    );
    let skip = trace.excerpt.len().saturating_sub(TRACE_LINES);
    for line in trace.excerpt.iter().skip(skip) {
        println!("  {line}");
    }
}

/// Where an anomaly shows in the trace, in words.
fn place(anomaly: &Anomaly) -> String {
    match &anomaly.at {
        Some(TraceFocus::Record {
            topic,
            partition,
            offset,
        }) => format!("where {topic}-{partition}@{offset} was written"),
        Some(TraceFocus::Time { at_ms }) => format!("at {at_ms} ms"),
        None => String::new(),
    }
}

fn print_verdict(verdict: &SeedVerdict) {
    print_anomalies(&verdict.anomalies);
}

/// `verdict: pass`, or `verdict: FAIL` with the anomalies of each kind and
/// their records (`eddy sim run` and `eddy verify` print the same).
pub fn print_anomalies(anomalies: &[Anomaly]) {
    if anomalies.is_empty() {
        println!("verdict: pass");
        return;
    }
    let kinds: BTreeSet<AnomalyKind> = anomalies.iter().map(|a| a.kind).collect();
    let names: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
    println!(
        "verdict: FAIL: {} anomal{} ({})",
        anomalies.len(),
        if anomalies.len() == 1 { "y" } else { "ies" },
        names.join(", ")
    );
    for kind in kinds {
        let of_kind: Vec<_> = anomalies.iter().filter(|a| a.kind == kind).collect();
        for anomaly in of_kind.iter().take(ANOMALIES_PER_KIND) {
            println!("  {anomaly}");
            for record in anomaly.records.iter().take(RECORDS_PER_ANOMALY) {
                println!("      {record}");
            }
            if anomaly.records.len() > RECORDS_PER_ANOMALY {
                println!(
                    "      ... {} more",
                    anomaly.records.len() - RECORDS_PER_ANOMALY
                );
            }
        }
        if of_kind.len() > ANOMALIES_PER_KIND {
            println!("  ... {} more {kind}", of_kind.len() - ANOMALIES_PER_KIND);
        }
    }
}
