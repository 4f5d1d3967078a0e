//! The report's rows, built from what a run measured: each figure with its ratio to the
//! ceiling or the floor and, where the issue sets one, its targets.

use std::fmt::Write as _;

use crate::feed::{Delivery, RATE, SUBSCRIBERS, WRITERS};
use crate::floor::FloorRun;
use crate::run::{Ceiling, Run, median};
use crate::server::STARTS;
use crate::table::{Row, Table, judge, mib, ms, ms_us, times};
use crate::targets::{Check, Measure, NOT_RUN_WITHOUT_LARGE, checks};
use crate::wrk::Wrk;

/// The table of a run: the ceiling's rows, then each N's, in the order they were
/// measured.
pub fn report(ceiling: &Ceiling, runs: &[Run], large: bool) -> Table {
    let mut rows = Vec::new();
    let hello = "hello (ceiling)";
    rows.push(plain_row(
        "—",
        &format!("{hello} start-up"),
        format!("{} ms", ms(ceiling.start)),
        "1.00 (ceiling)".into(),
        vec![],
    ));
    rows.push(plain_row(
        "—",
        &format!("{hello} RSS idle"),
        mib(ceiling.idle),
        "1.00 (ceiling)".into(),
        vec![],
    ));
    rows.push(plain_row(
        "—",
        &format!("{hello} RSS at the end (after all its loads)"),
        mib(ceiling.loaded),
        "1.00 (ceiling)".into(),
        vec![],
    ));
    for run in runs {
        let n = run.n;
        let label = n.to_string();
        let start = median(&run.starts);
        let spread = {
            let mut s = run.starts.clone();
            s.sort();
            format!("{}–{}", ms(s[0]), ms(s[s.len() - 1]))
        };
        rows.push(plain_row(
            &label,
            &format!("start-up (median of {STARTS}: {spread} ms)"),
            format!("{} ms", ms(start)),
            format!(
                "{} hello",
                times(start.as_secs_f64() / ceiling.start.as_secs_f64())
            ),
            checks(run, Measure::StartUp),
        ));
        rows.push(plain_row(
            &label,
            "RSS idle after start",
            mib(run.idle),
            format!("{} hello", times(run.idle as f64 / ceiling.idle as f64)),
            checks(run, Measure::RssIdle),
        ));
        if let Some(s) = &run.scenarios {
            let vs_hello = |w: &Wrk, h: &Wrk| {
                format!(
                    "{} hello req/s; p99 {} hello",
                    times(w.rps() / h.rps()),
                    times(w.p99_us as f64 / h.p99_us.max(1) as f64)
                )
            };
            for (measure, what, conns, w, ratio) in [
                (
                    Measure::Hello32a,
                    "hello (ceiling) GET /, run 1",
                    32,
                    &s.hello32a,
                    "before the reads",
                ),
                (
                    Measure::Hello32b,
                    "hello (ceiling) GET /, run 2",
                    32,
                    &s.hello32b,
                    "after get and hot path",
                ),
                (
                    Measure::Hello32,
                    "hello (ceiling) GET /, runs 1+2",
                    32,
                    &s.hello32,
                    "1.00 (ceiling)",
                ),
                (
                    Measure::Hello1,
                    "hello (ceiling) GET /",
                    1,
                    &s.hello1,
                    "1.00 (ceiling)",
                ),
            ] {
                rows.push(wrk_row(
                    &label,
                    what,
                    conns,
                    w,
                    ratio.into(),
                    checks(run, measure),
                ));
            }
            rows.push(wrk_row(
                &label,
                "GET /sessions/{name}",
                32,
                &s.get,
                vs_hello(&s.get, &s.hello32),
                checks(run, Measure::Get),
            ));
            if let Some(small) = &s.get_n100 {
                rows.push(wrk_row(
                    &label,
                    "GET /sessions/{name}, fresh N=100 service, right after",
                    32,
                    small,
                    vs_hello(small, &s.hello32),
                    checks(run, Measure::GetN100),
                ));
            }
            rows.push(wrk_row(
                &label,
                "GET /sessions/active + …/persona + …/launch",
                32,
                &s.hot,
                vs_hello(&s.hot, &s.hello32),
                checks(run, Measure::Hot),
            ));
            rows.push(wrk_row(
                &label,
                "GET /sessions",
                1,
                &s.list1,
                vs_hello(&s.list1, &s.hello1),
                checks(run, Measure::List1),
            ));
            rows.push(wrk_row(
                &label,
                "GET /sessions",
                32,
                &s.list32,
                vs_hello(&s.list32, &s.hello32),
                checks(run, Measure::List32),
            ));
            rows.push(plain_row(
                &label,
                "peak RSS during GET /sessions at 32 conns (VmRSS every 5 ms)",
                mib(s.list32_peak),
                format!(
                    "{} hello after load",
                    times(s.list32_peak as f64 / ceiling.loaded as f64)
                ),
                checks(run, Measure::ListPeak),
            ));
            rows.push(wrk_row(
                &label,
                &format!("GET /sessions?limit=100&after=<s{:05}> (a page)", n / 2),
                1,
                &s.page,
                vs_hello(&s.page, &s.hello1),
                checks(run, Measure::Page),
            ));
            // Each write: its floor on 4 threads and on 1, then the service's.
            for (op, what, w, floor, [four, one, measure]) in [
                (
                    "create",
                    "POST /sessions (create)",
                    &s.create,
                    &s.create_floor,
                    [
                        Measure::CreateFloor4,
                        Measure::CreateFloor1,
                        Measure::Create,
                    ],
                ),
                (
                    "switch",
                    "PUT /sessions/active (switch)",
                    &s.switch,
                    &s.switch_floor,
                    [
                        Measure::SwitchFloor4,
                        Measure::SwitchFloor1,
                        Measure::Switch,
                    ],
                ),
                (
                    "replace",
                    "POST /sessions/{name}/usage",
                    &s.usage,
                    &s.replace_floor,
                    [
                        Measure::ReplaceFloor4,
                        Measure::ReplaceFloor1,
                        Measure::Usage,
                    ],
                ),
            ] {
                rows.push(floor_row(
                    &label,
                    op,
                    4,
                    &floor.four,
                    "1.00 (floor)".into(),
                    checks(run, four),
                ));
                rows.push(floor_row(
                    &label,
                    op,
                    1,
                    &floor.one,
                    format!(
                        "{} floor x4",
                        times(floor.one.ops_per_sec / floor.four.ops_per_sec)
                    ),
                    checks(run, one),
                ));
                rows.push(wrk_row(
                    &label,
                    what,
                    4,
                    w,
                    format!(
                        "{} floor x4; {} floor x1",
                        times(w.rps() / floor.four.ops_per_sec),
                        times(w.rps() / floor.one.ops_per_sec)
                    ),
                    checks(run, measure),
                ));
            }
            if let Some(feed) = &s.feed {
                let what = "change feed: PATCH /sessions/{name} at 1000/s,";
                for (measure, phase, w, ratio) in [
                    (
                        Measure::FeedBefore,
                        "0 subscribers, before",
                        &feed.before,
                        None,
                    ),
                    (
                        Measure::FeedAfter,
                        "0 subscribers, after",
                        &feed.after,
                        None,
                    ),
                    (
                        Measure::FeedQuiet,
                        "0 subscribers, before+after",
                        &feed.quiet,
                        Some("1.00 (reference)".to_owned()),
                    ),
                    (
                        Measure::FeedLoaded,
                        "64 subscribers",
                        &feed.loaded,
                        Some(format!(
                            "p50 {}, p99 {} 0 subscribers",
                            times(feed.loaded.p50_us as f64 / feed.quiet.p50_us.max(1) as f64),
                            times(feed.loaded.p99_us as f64 / feed.quiet.p99_us.max(1) as f64)
                        )),
                    ),
                ] {
                    let ratio = ratio
                        .unwrap_or_else(|| format!("{} of {RATE:.0}/s", times(w.rps() / RATE)));
                    rows.push(wrk_row(
                        &label,
                        &format!("{what} {phase}"),
                        WRITERS,
                        w,
                        ratio,
                        checks(run, measure),
                    ));
                }
                rows.push(delivery_row(
                    &label,
                    &feed.delivery,
                    checks(run, Measure::FeedDelivery),
                ));
            }
        }
        rows.push(plain_row(
            &label,
            if run.scenarios.is_some() {
                "RSS after load"
            } else {
                "RSS after start (no load)"
            },
            mib(run.loaded),
            format!(
                "{} hello after load",
                times(run.loaded as f64 / ceiling.loaded as f64)
            ),
            checks(run, Measure::RssEnd),
        ));
    }
    let mut not_run = Vec::new();
    if !large {
        not_run.push(NOT_RUN_WITHOUT_LARGE.to_owned());
    }
    Table { rows, not_run }
}

fn floor_row(
    n: &str,
    op: &str,
    threads: u32,
    run: &FloorRun,
    ratio: String,
    checks: Vec<Check>,
) -> Row {
    let (target, verdict) = judge(&checks);
    Row {
        n: n.into(),
        what: format!("durable {op} floor (bench/driver/src/bin/floor.rs)"),
        conns: format!("{threads} thr"),
        figure: format!("{:.0} ops/s", run.ops_per_sec),
        p50: format!("{} ms", ms_us(run.p50_us)),
        p99: format!("{} ms", ms_us(run.p99_us)),
        ratio,
        errors: "—".into(),
        target,
        verdict,
    }
}

/// The change feed's events: how many reached the subscribers, and how soon after their
/// write's reply.
fn delivery_row(n: &str, d: &Delivery, checks: Vec<Check>) -> Row {
    let (target, verdict) = judge(&checks);
    Row {
        n: n.into(),
        what: format!(
            "change feed: each write's event at each of {SUBSCRIBERS} subscribers \
             (arrival − the write's reply)"
        ),
        conns: SUBSCRIBERS.to_string(),
        figure: format!("{} / {} events", d.delivered, d.expected),
        p50: format!("{} ms", ms_us(d.p50_us)),
        p99: format!("{} ms", ms_us(d.p99_us)),
        ratio: format!("{} missed, {} resyncs", d.expected - d.delivered, d.resyncs),
        errors: "—".into(),
        target,
        verdict,
    }
}

fn plain_row(n: &str, what: &str, figure: String, ratio: String, checks: Vec<Check>) -> Row {
    let (target, verdict) = judge(&checks);
    Row {
        n: n.into(),
        what: what.into(),
        conns: "—".into(),
        figure,
        p50: "—".into(),
        p99: "—".into(),
        ratio,
        errors: "—".into(),
        target,
        verdict,
    }
}

fn wrk_row(n: &str, what: &str, conns: u32, w: &Wrk, ratio: String, checks: Vec<Check>) -> Row {
    let (target, verdict) = judge(&checks);
    let mut errors = format!("{} / {}", w.non2xx, w.socket_errors());
    if w.unexpected > 0 {
        write!(errors, " (+{} unexpected)", w.unexpected).ok();
    }
    Row {
        n: n.into(),
        what: what.into(),
        conns: conns.to_string(),
        figure: format!("{:.0} req/s", w.rps()),
        p50: format!("{} ms", ms_us(w.p50_us)),
        p99: format!("{} ms", ms_us(w.p99_us)),
        ratio,
        errors,
        target,
        verdict,
    }
}
