//! Every target of the benchmark, in one table ([`TARGETS`]): at which N, on which row
//! of the report, which figure, and the bound it must keep, alone or as a multiple of
//! another row's figure. Adding a target is adding a row; the report asks this module
//! for the checks of each row it prints ([`checks`]).

use Bound::{AtLeast, AtMost};
use Figure::*;
use Measure::*;
use On::{EveryLoad, Row};
use Reference::{Absolute, Of};
use Sizes::{At, Every};

use crate::feed::{Delivery, RATE};
use crate::floor::FloorRun;
use crate::run::{Run, median};
use crate::wrk::Wrk;

/// A row of the report at one N: what a target is judged on, or compared with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Measure {
    /// The service's start-up, the median of its starts.
    StartUp,
    /// The service's memory right after start.
    RssIdle,
    /// The ceiling at 32 connections before the reads, after them, and both pooled.
    Hello32a,
    Hello32b,
    Hello32,
    /// The ceiling at 1 connection.
    Hello1,
    /// `GET /sessions/{name}`, at 32 connections.
    Get,
    /// The same on a fresh N=100 service, right after (for N > 100).
    GetN100,
    /// `GET /sessions/active`, `…/persona` and `…/launch`.
    Hot,
    /// `GET /sessions` at 1 connection and at 32.
    List1,
    List32,
    /// The service's peak memory during `List32`.
    ListPeak,
    /// `GET /sessions?limit=100&after=…`, at 1 connection.
    Page,
    /// The durable-create floor on 4 threads and on 1, then the service's create.
    CreateFloor4,
    CreateFloor1,
    Create,
    /// The durable-switch floor on 4 threads and on 1, then the service's switch.
    SwitchFloor4,
    SwitchFloor1,
    Switch,
    /// The durable-replace floor on 4 threads and on 1, then the service's usage posts.
    ReplaceFloor4,
    ReplaceFloor1,
    Usage,
    /// The change feed's writes with no subscriber before, after, and both pooled; with
    /// 64 subscribers; and the events those received.
    FeedBefore,
    FeedAfter,
    FeedQuiet,
    FeedLoaded,
    FeedDelivery,
    /// The service's memory after its loads (after start only, at N=0).
    RssEnd,
}

impl Measure {
    /// A row of an HTTP load (wrk), as opposed to start-up, memory or the floor.
    fn is_load(self) -> bool {
        matches!(
            self,
            Hello32a
                | Hello32b
                | Hello32
                | Hello1
                | Get
                | GetN100
                | Hot
                | List1
                | List32
                | Page
                | Create
                | Switch
                | Usage
                | FeedBefore
                | FeedAfter
                | FeedQuiet
                | FeedLoaded
        )
    }
}

/// The sizes a target applies at.
#[derive(Clone, Copy)]
enum Sizes {
    At(usize),
    /// Every N that has the row.
    Every,
}

/// The rows a target is judged on.
#[derive(Clone, Copy)]
enum On {
    Row(Measure),
    /// Every row of an HTTP load.
    EveryLoad,
}

/// A figure of a row, in the unit its bound is written in.
#[derive(Clone, Copy)]
enum Figure {
    StartUpMs,
    RssMib,
    /// Requests (or, on a floor row, operations) per second.
    Rps,
    P50Ms,
    P99Ms,
    /// Non-2xx answers plus socket errors.
    Errors,
    /// Answers the wrk script rejected: a create not 201, a switch that changed nothing.
    Unexpected,
    /// Events a subscriber should have had and did not.
    Undelivered,
    /// `resync` events the subscribers got.
    Resyncs,
}

/// The bound a figure must keep: at most or at least this many of its reference.
#[derive(Clone, Copy)]
enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

/// What a bound is a multiple of.
#[derive(Clone, Copy)]
enum Reference {
    /// Nothing: the bound is in the figure's unit.
    Absolute,
    /// A figure of another row at the same N (no check where that row is missing).
    Of(Measure, Figure),
}

/// One target. `text` is what the report's target column says; `{ratio}` in it stands
/// for the figure over its reference, to two decimals.
struct Target {
    sizes: Sizes,
    on: On,
    figure: Figure,
    bound: Bound,
    of: Reference,
    text: &'static str,
}

const fn target(
    sizes: Sizes,
    on: On,
    figure: Figure,
    bound: Bound,
    of: Reference,
    text: &'static str,
) -> Target {
    Target {
        sizes,
        on,
        figure,
        bound,
        of,
        text,
    }
}

/// The targets as the issue set them (issue 13; where it sets none for a row and N, the
/// earlier issue's stays). A row's checks read in this order, so the errors target,
/// which every load row has, comes last.
#[rustfmt::skip]
const TARGETS: &[Target] = &[
    //     N            row                figure       bound              reference              target text
    target(At(0),       Row(StartUp),      StartUpMs,   AtMost(8.0),       Absolute,              "≤ 8 ms"),
    target(At(10_000),  Row(StartUp),      StartUpMs,   AtMost(100.0),     Absolute,              "≤ 100 ms"),
    target(At(100_000), Row(StartUp),      StartUpMs,   AtMost(1000.0),    Absolute,              "≤ 1000 ms"),
    target(At(0),       Row(RssIdle),      RssMib,      AtMost(8.0),       Absolute,              "≤ 8 MiB"),
    target(At(10_000),  Row(Get),          Rps,         AtLeast(0.75),     Of(Hello32, Rps),      "≥ 0.75× hello req/s"),
    target(At(10_000),  Row(Get),          P99Ms,       AtMost(1.5),       Of(Hello32, P99Ms),    "p99 ≤ 1.5× hello"),
    target(At(10_000),  Row(Get),          Rps,         AtLeast(0.9),      Of(GetN100, Rps),      "≥ 0.90× N=100 req/s (is {ratio}×)"),
    target(At(10_000),  Row(Hot),          Rps,         AtLeast(0.6),      Of(Hello32, Rps),      "≥ 0.60× hello req/s"),
    target(At(10_000),  Row(List1),        P50Ms,       AtMost(10.0),      Absolute,              "p50 ≤ 10 ms"),
    target(At(100_000), Row(List1),        P50Ms,       AtMost(20.0),      Absolute,              "p50 ≤ 20 ms"),
    target(At(100_000), Row(ListPeak),     RssMib,      AtMost(64.0),      Absolute,              "≤ 64 MiB"),
    target(At(100_000), Row(Page),         P50Ms,       AtMost(1.0),       Absolute,              "p50 ≤ 1 ms"),
    target(Every,       Row(Create),       Rps,         AtLeast(0.7),      Of(CreateFloor4, Rps), "≥ 0.70× floor x4"),
    target(Every,       Row(Create),       Unexpected,  AtMost(0.0),       Absolute,              "every answer 201"),
    target(Every,       Row(Switch),       Rps,         AtLeast(0.7),      Of(SwitchFloor4, Rps), "≥ 0.70× floor x4"),
    target(Every,       Row(Switch),       Unexpected,  AtMost(0.0),       Absolute,              "every switch changed"),
    target(Every,       Row(Usage),        Rps,         AtLeast(0.7),      Of(ReplaceFloor4, Rps),"≥ 0.70× floor x4"),
    target(Every,       Row(Usage),        Unexpected,  AtMost(0.0),       Absolute,              "every post counted"),
    target(Every,       Row(FeedLoaded),   Rps,         AtLeast(0.99*RATE),Absolute,              "≥ 990 writes/s"),
    target(Every,       Row(FeedLoaded),   P99Ms,       AtMost(1.1),       Of(FeedQuiet, P99Ms),  "p99 ≤ 1.10× 0 subscribers (is {ratio}×)"),
    target(Every,       Row(FeedDelivery), Undelivered, AtMost(0.0),       Absolute,              "every event to every subscriber"),
    target(Every,       Row(FeedDelivery), Resyncs,     AtMost(0.0),       Absolute,              "no resync"),
    target(Every,       Row(FeedDelivery), P99Ms,       AtMost(10.0),      Absolute,              "p99 ≤ 10 ms"),
    target(At(10_000),  Row(RssEnd),       RssMib,      AtMost(24.0),      Absolute,              "≤ 24 MiB"),
    target(At(100_000), Row(RssEnd),       RssMib,      AtMost(160.0),     Absolute,              "≤ 160 MiB"),
    target(Every,       EveryLoad,         Errors,      AtMost(0.0),       Absolute,              "0 errors"),
];

/// What the summary says when the run had no N=100,000 (the `At(100_000)` rows above).
pub const NOT_RUN_WITHOUT_LARGE: &str = "N=100000 (start-up ≤ 1 s, list all 1 conn p50 ≤ \
     20 ms, peak RSS of 32 concurrent full lists ≤ 64 MiB, a page of 100 p50 ≤ 1 ms, RSS \
     after load ≤ 160 MiB): not run; `bench/run --large` or BENCH_LARGE=1";

/// A target's text, made concrete, and whether the run kept it.
pub struct Check(pub String, pub bool);

/// The checks of `row` in `run`, in table order: every target that applies to it and
/// whose figures were measured.
pub fn checks(run: &Run, row: Measure) -> Vec<Check> {
    TARGETS
        .iter()
        .filter(|t| t.applies(run.n, row))
        .filter_map(|t| t.check(run, row))
        .collect()
}

impl Target {
    fn applies(&self, n: usize, row: Measure) -> bool {
        let size = match self.sizes {
            At(at) => at == n,
            Every => true,
        };
        let on = match self.on {
            Row(on) => on == row,
            EveryLoad => row.is_load(),
        };
        size && on
    }

    fn check(&self, run: &Run, row: Measure) -> Option<Check> {
        let value = figure(run, row, self.figure)?;
        let reference = match self.of {
            Absolute => 1.0,
            Of(measure, figure_of) => figure(run, measure, figure_of)?,
        };
        let holds = match self.bound {
            AtMost(k) => value <= k * reference,
            AtLeast(k) => value >= k * reference,
        };
        let text = self
            .text
            .replace("{ratio}", &format!("{:.2}", value / reference));
        Some(Check(text, holds))
    }
}

/// A figure of a row of `run`; `None` where the run has no such row or the row no such
/// figure.
fn figure(run: &Run, row: Measure, figure: Figure) -> Option<f64> {
    match figure {
        StartUpMs => match row {
            StartUp => Some(median(&run.starts).as_nanos() as f64 / 1e6),
            _ => None,
        },
        RssMib => match row {
            RssIdle => Some(run.idle as f64 / 1024.0),
            RssEnd => Some(run.loaded as f64 / 1024.0),
            ListPeak => Some(run.scenarios.as_ref()?.list32_peak as f64 / 1024.0),
            _ => None,
        },
        Rps => load(run, row)
            .map(Wrk::rps)
            .or_else(|| floor(run, row).map(|f| f.ops_per_sec)),
        P50Ms => load(run, row)
            .map(|w| w.p50_us)
            .or_else(|| floor(run, row).map(|f| f.p50_us))
            .or_else(|| delivery(run, row).map(|d| d.p50_us))
            .map(|us| us as f64 / 1000.0),
        P99Ms => load(run, row)
            .map(|w| w.p99_us)
            .or_else(|| floor(run, row).map(|f| f.p99_us))
            .or_else(|| delivery(run, row).map(|d| d.p99_us))
            .map(|us| us as f64 / 1000.0),
        Errors => load(run, row).map(|w| (w.non2xx + w.socket_errors()) as f64),
        Unexpected => load(run, row).map(|w| w.unexpected as f64),
        Undelivered => delivery(run, row).map(|d| (d.expected - d.delivered) as f64),
        Resyncs => delivery(run, row).map(|d| d.resyncs as f64),
    }
}

/// The wrk run behind a load row.
fn load(run: &Run, row: Measure) -> Option<&Wrk> {
    let s = run.scenarios.as_ref()?;
    Some(match row {
        Hello32a => &s.hello32a,
        Hello32b => &s.hello32b,
        Hello32 => &s.hello32,
        Hello1 => &s.hello1,
        Get => &s.get,
        GetN100 => s.get_n100.as_ref()?,
        Hot => &s.hot,
        List1 => &s.list1,
        List32 => &s.list32,
        Page => &s.page,
        Create => &s.create,
        Switch => &s.switch,
        Usage => &s.usage,
        FeedBefore => &s.feed.as_ref()?.before,
        FeedAfter => &s.feed.as_ref()?.after,
        FeedQuiet => &s.feed.as_ref()?.quiet,
        FeedLoaded => &s.feed.as_ref()?.loaded,
        _ => return None,
    })
}

/// The events of the change feed's row.
fn delivery(run: &Run, row: Measure) -> Option<&Delivery> {
    match row {
        FeedDelivery => Some(&run.scenarios.as_ref()?.feed.as_ref()?.delivery),
        _ => None,
    }
}

/// The floor run behind a floor row.
fn floor(run: &Run, row: Measure) -> Option<&FloorRun> {
    let s = run.scenarios.as_ref()?;
    Some(match row {
        CreateFloor4 => &s.create_floor.four,
        CreateFloor1 => &s.create_floor.one,
        SwitchFloor4 => &s.switch_floor.four,
        SwitchFloor1 => &s.switch_floor.one,
        ReplaceFloor4 => &s.replace_floor.four,
        ReplaceFloor1 => &s.replace_floor.one,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::feed::FeedRun;
    use crate::floor::FloorPair;
    use crate::run::Scenarios;

    fn wrk(rps: u64, p99_us: u64) -> Wrk {
        Wrk {
            requests: rps,
            bytes: 0,
            duration_us: 1_000_000,
            p50_us: 1_000,
            p99_us,
            non2xx: 0,
            connect: 0,
            read: 0,
            write: 0,
            timeout: 0,
            unexpected: 0,
        }
    }

    fn floor(ops_per_sec: f64) -> FloorPair {
        let run = |ops_per_sec| FloorRun {
            ops_per_sec,
            p50_us: 1_000,
            p99_us: 2_000,
        };
        FloorPair {
            four: run(ops_per_sec),
            one: run(ops_per_sec / 2.0),
        }
    }

    /// A run at N=10,000 sitting exactly on every bound.
    fn on_the_bounds() -> Run {
        Run {
            n: 10_000,
            starts: vec![Duration::from_millis(100); 3],
            idle: 4096,
            loaded: 24 * 1024,
            scenarios: Some(Scenarios {
                get_n100: Some(wrk(833, 1000)),
                hello32: wrk(1000, 1000),
                hello32a: wrk(1000, 1000),
                hello32b: wrk(1000, 1000),
                hello1: wrk(1000, 1000),
                get: wrk(750, 1500),
                hot: wrk(600, 1000),
                list1: Wrk {
                    p50_us: 10_000,
                    ..wrk(100, 20_000)
                },
                list32: wrk(1000, 1000),
                list32_peak: 200 * 1024,
                page: Wrk {
                    p50_us: 5_000,
                    ..wrk(100, 20_000)
                },
                create: wrk(700, 5000),
                switch: wrk(700, 5000),
                usage: wrk(700, 5000),
                create_floor: floor(1000.0),
                switch_floor: floor(1000.0),
                replace_floor: floor(1000.0),
                feed: Some(FeedRun {
                    before: wrk(1000, 1000),
                    after: wrk(1000, 1000),
                    quiet: wrk(1000, 1000),
                    loaded: wrk(990, 1100),
                    delivery: Delivery {
                        expected: 64_000,
                        delivered: 64_000,
                        resyncs: 0,
                        p50_us: 1_000,
                        p99_us: 10_000,
                    },
                }),
            }),
        }
    }

    /// The same at N=100,000, where the list, the page and memory have their own bounds.
    fn large_on_the_bounds() -> Run {
        let mut run = on_the_bounds();
        run.n = 100_000;
        run.starts = vec![Duration::from_millis(1000); 3];
        run.loaded = 160 * 1024;
        let s = run.scenarios.as_mut().unwrap();
        s.list1.p50_us = 20_000;
        s.list32_peak = 64 * 1024;
        s.page.p50_us = 1_000;
        run
    }

    fn texts(checks: &[Check]) -> Vec<(&str, bool)> {
        checks.iter().map(|c| (c.0.as_str(), c.1)).collect()
    }

    #[test]
    fn a_figure_on_its_bound_passes() {
        let run = on_the_bounds();
        for row in [
            StartUp,
            Get,
            Hot,
            List1,
            Create,
            Switch,
            Usage,
            FeedLoaded,
            FeedDelivery,
            RssEnd,
        ] {
            let checks = checks(&run, row);
            assert!(!checks.is_empty(), "{row:?} has targets at N=10,000");
            assert!(checks.iter().all(|c| c.1), "{row:?}: {:?}", texts(&checks));
        }
        let large = large_on_the_bounds();
        for row in [StartUp, List1, ListPeak, Page, RssEnd] {
            let checks = checks(&large, row);
            assert!(!checks.is_empty(), "{row:?} has targets at N=100,000");
            assert!(checks.iter().all(|c| c.1), "{row:?}: {:?}", texts(&checks));
        }
    }

    #[test]
    fn a_figure_past_its_bound_fails() {
        let mut run = on_the_bounds();
        run.starts = vec![Duration::from_micros(100_001); 3];
        run.loaded += 1;
        let s = run.scenarios.as_mut().unwrap();
        s.get.p99_us += 1;
        s.hot.requests -= 1;
        s.list1.p50_us += 1;
        s.create.requests -= 1;
        s.switch.unexpected = 1;
        s.usage.requests -= 1;
        let feed = s.feed.as_mut().unwrap();
        feed.loaded.requests -= 1;
        feed.delivery.delivered -= 1;
        assert_eq!(texts(&checks(&run, StartUp)), [("≤ 100 ms", false)]);
        assert_eq!(texts(&checks(&run, RssEnd)), [("≤ 24 MiB", false)]);
        assert_eq!(
            texts(&checks(&run, List1)),
            [("p50 ≤ 10 ms", false), ("0 errors", true)]
        );
        assert!(!checks(&run, Get)[1].1, "p99 over 1.5× hello");
        assert!(!checks(&run, Hot)[0].1, "under 0.60× hello");
        assert!(!checks(&run, Create)[0].1, "under 0.70× floor");
        assert!(!checks(&run, Switch)[1].1, "an unexpected answer");
        assert!(!checks(&run, Usage)[0].1, "under 0.70× floor");
        assert_eq!(
            texts(&checks(&run, FeedLoaded)),
            [
                ("≥ 990 writes/s", false),
                ("p99 ≤ 1.10× 0 subscribers (is 1.10×)", true),
                ("0 errors", true),
            ]
        );
        assert_eq!(
            texts(&checks(&run, FeedDelivery)),
            [
                ("every event to every subscriber", false),
                ("no resync", true),
                ("p99 ≤ 10 ms", true),
            ]
        );

        let mut large = large_on_the_bounds();
        large.loaded += 1;
        let s = large.scenarios.as_mut().unwrap();
        s.list32_peak += 1;
        s.page.p50_us += 1;
        assert_eq!(texts(&checks(&large, RssEnd)), [("≤ 160 MiB", false)]);
        assert_eq!(texts(&checks(&large, ListPeak)), [("≤ 64 MiB", false)]);
        assert_eq!(
            texts(&checks(&large, Page)),
            [("p50 ≤ 1 ms", false), ("0 errors", true)]
        );
    }

    #[test]
    fn checks_read_in_table_order_with_the_measured_ratio_and_errors_last() {
        let run = on_the_bounds();
        assert_eq!(
            texts(&checks(&run, Get)),
            [
                ("≥ 0.75× hello req/s", true),
                ("p99 ≤ 1.5× hello", true),
                ("≥ 0.90× N=100 req/s (is 0.90×)", true),
                ("0 errors", true),
            ]
        );
        assert_eq!(
            texts(&checks(&run, Usage)),
            [
                ("≥ 0.70× floor x4", true),
                ("every post counted", true),
                ("0 errors", true),
            ]
        );
        assert_eq!(texts(&checks(&run, Page)), [("0 errors", true)]);
        assert_eq!(texts(&checks(&run, FeedQuiet)), [("0 errors", true)]);
        assert!(checks(&run, ListPeak).is_empty(), "no target at N=10,000");
        assert!(
            checks(&run, CreateFloor4).is_empty(),
            "a floor row has no target"
        );
    }

    #[test]
    fn a_target_whose_reference_was_not_measured_is_left_out() {
        let mut run = on_the_bounds();
        let s = run.scenarios.as_mut().unwrap();
        s.get_n100 = None;
        s.feed = None;
        assert_eq!(checks(&run, Get).len(), 3);
        assert!(checks(&run, FeedLoaded).is_empty());
        assert!(checks(&run, FeedDelivery).is_empty());
    }
}
