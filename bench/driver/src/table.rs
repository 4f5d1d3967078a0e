//! The report's table: its rows, the verdict of each row's targets, rendering it as
//! Markdown with aligned columns, the summary of passes and failures, and the number
//! formats every figure is shown in.

use std::fmt::Write as _;
use std::time::Duration;

use crate::targets::Check;

#[derive(Clone, Copy, PartialEq)]
pub enum Verdict {
    Pass,
    Fail,
    /// No target for this figure.
    None,
}

/// One line of the table, every cell already formatted.
pub struct Row {
    pub n: String,
    pub what: String,
    pub conns: String,
    pub figure: String,
    pub p50: String,
    pub p99: String,
    pub ratio: String,
    pub errors: String,
    pub target: String,
    pub verdict: Verdict,
}

/// The rows, and the targets a run without `--large` could not judge.
pub struct Table {
    pub rows: Vec<Row>,
    pub not_run: Vec<String>,
}

/// The row's target text (each failing check marked) and its verdict.
pub fn judge(checks: &[Check]) -> (String, Verdict) {
    if checks.is_empty() {
        return (String::new(), Verdict::None);
    }
    let text = checks
        .iter()
        .map(|Check(t, ok)| {
            if *ok {
                t.clone()
            } else {
                format!("**{t}** ✗")
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    let verdict = if checks.iter().all(|c| c.1) {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    (text, verdict)
}

impl Table {
    pub fn render(&self) -> String {
        let header = [
            "N",
            "measure",
            "conns",
            "figure",
            "p50",
            "p99",
            "vs ceiling / floor",
            "non-2xx / socket err",
            "target",
            "result",
        ];
        let cells: Vec<[String; 10]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.n.clone(),
                    r.what.clone(),
                    r.conns.clone(),
                    r.figure.clone(),
                    r.p50.clone(),
                    r.p99.clone(),
                    r.ratio.clone(),
                    r.errors.clone(),
                    r.target.clone(),
                    match r.verdict {
                        Verdict::Pass => "PASS".into(),
                        Verdict::Fail => "FAIL".into(),
                        Verdict::None => "—".into(),
                    },
                ]
            })
            .collect();
        let width = |i: usize| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..header.len()).map(width).collect();
        let line = |cols: &[String]| {
            let mut s = String::from("|");
            for (c, w) in cols.iter().zip(&widths) {
                let pad = w - c.chars().count();
                write!(s, " {c}{} |", " ".repeat(pad)).ok();
            }
            s
        };
        let mut out = String::new();
        out.push_str(&line(&header.map(String::from)));
        out.push('\n');
        out.push_str(&line(
            &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
        ));
        out.push('\n');
        for c in &cells {
            out.push_str(&line(c));
            out.push('\n');
        }
        out
    }

    pub fn summary(&self) -> String {
        let pass = self
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Pass)
            .count();
        let failed: Vec<String> = self
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Fail)
            .map(|r| format!("N={} {} ({})", r.n, r.what, r.target))
            .collect();
        let mut out = format!("targets: {pass} rows pass, {} fail\n", failed.len());
        for f in &failed {
            writeln!(out, "- FAIL {f}").ok();
        }
        for n in &self.not_run {
            writeln!(out, "- {n}").ok();
        }
        out
    }
}

pub fn ms(d: Duration) -> String {
    ms_us(d.as_micros() as u64)
}

/// Milliseconds from microseconds: three decimals under 10 ms, one above.
pub fn ms_us(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms < 10.0 {
        format!("{ms:.3}")
    } else {
        format!("{ms:.1}")
    }
}

/// A ratio, with enough digits to tell small ones apart.
pub fn times(ratio: f64) -> String {
    if ratio >= 100.0 {
        format!("{ratio:.0}×")
    } else if ratio >= 10.0 {
        format!("{ratio:.1}×")
    } else if ratio >= 0.1 {
        format!("{ratio:.2}×")
    } else {
        format!("{ratio:.4}×")
    }
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
