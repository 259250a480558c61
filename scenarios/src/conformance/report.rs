//! The outcome of a conformance run, and how it is printed.

use std::fmt::Write as _;

/// How one check ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// The target broke a guarantee (or the check could not be carried out);
    /// the reason says what was expected and what was seen.
    Failed(String),
    /// The env lacks what the check needs (for example broker control); a
    /// skipped check is never counted as passed.
    Skipped(String),
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    pub area: &'static str,
    pub name: &'static str,
    pub outcome: Outcome,
    /// What the check observed that is worth comparing between targets
    /// (offsets, partitions, error codes), one line each.
    pub notes: Vec<String>,
    pub elapsed_ms: u64,
}

/// A whole run's results, in the order the checks ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub target: String,
    pub checks: Vec<CheckReport>,
}

impl Report {
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            checks: Vec::new(),
        }
    }

    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Passed))
    }

    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.checks.iter().filter(|c| f(&c.outcome)).count()
    }

    /// `N passed, M failed`, with `, K skipped` when any were skipped.
    pub fn total_line(&self) -> String {
        let mut line = format!("{} passed, {} failed", self.passed(), self.failed());
        if self.skipped() > 0 {
            write!(line, ", {} skipped", self.skipped()).expect("writing to a String");
        }
        line
    }

    /// One line per check (`area  name  pass|fail: reason|skip: reason`),
    /// each followed by its notes and its duration (on the target's clock)
    /// when `with_notes`, then the total line.
    pub fn render(&self, with_notes: bool) -> String {
        let area_width = self.checks.iter().map(|c| c.area.len()).max().unwrap_or(0);
        let name_width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for check in &self.checks {
            let verdict = match &check.outcome {
                Outcome::Passed => "pass".to_string(),
                Outcome::Failed(reason) => format!("FAIL: {}", one_line(reason)),
                Outcome::Skipped(reason) => format!("skip: {}", one_line(reason)),
            };
            writeln!(
                out,
                "{:<area_width$}  {:<name_width$}  {verdict}",
                check.area, check.name
            )
            .expect("writing to a String");
            if with_notes {
                for note in &check.notes {
                    writeln!(out, "{:<area_width$}    | {}", "", one_line(note))
                        .expect("writing to a String");
                }
                writeln!(out, "{:<area_width$}    | took {} ms", "", check.elapsed_ms)
                    .expect("writing to a String");
            }
        }
        out.push_str(&self.total_line());
        out.push('\n');
        out
    }
}

fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(outcome: Outcome) -> CheckReport {
        CheckReport {
            area: "log",
            name: "offsets are dense",
            outcome,
            notes: vec!["p0: 0..10".to_string()],
            elapsed_ms: 3,
        }
    }

    #[test]
    fn the_total_line_names_skipped_checks_only_when_there_are_some() {
        let mut report = Report::new("sim");
        report.checks.push(check(Outcome::Passed));
        report.checks.push(check(Outcome::Failed("boom".into())));
        assert_eq!(report.total_line(), "1 passed, 1 failed");
        report
            .checks
            .push(check(Outcome::Skipped("needs broker control".into())));
        assert_eq!(report.total_line(), "1 passed, 1 failed, 1 skipped");
    }

    #[test]
    fn a_skipped_check_is_not_counted_as_passed() {
        let mut report = Report::new("kafka");
        report
            .checks
            .push(check(Outcome::Skipped("needs broker control".into())));
        assert_eq!(report.passed(), 0);
        assert_eq!(report.skipped(), 1);
    }

    #[test]
    fn every_check_renders_on_one_line_with_its_reason() {
        let mut report = Report::new("sim");
        report
            .checks
            .push(check(Outcome::Failed("expected 1\nsaw 2".into())));
        let text = report.render(false);
        assert_eq!(
            text,
            "log  offsets are dense  FAIL: expected 1 saw 2\n0 passed, 1 failed\n"
        );
        assert!(report.render(true).contains("| p0: 0..10"));
    }
}
