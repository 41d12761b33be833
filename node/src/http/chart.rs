//! The dashboard's bar charts, drawn on the server as SVG: a bar per UTC hour, a time axis (hour
//! ticks, the date where the day changes) and an amount axis (a few "nice" ticks). Which ticks
//! and what they read are pure functions over integers, so money labels are exact; floats only
//! place pixels. The SVG has no `viewBox`: bars are placed in percentages of the width while text
//! keeps its pixel size, so the labels read the same on a phone and on a desktop.

use chrono::{TimeZone, Utc};
use maud::{Markup, html};
use minerpool_core::store::history::{HOUR_MS, Hours};

use minerpool_core::money::{DECIMALS, UNITS_PER_COIN, coins_text};

use super::text::when;

/// Smallest units in one coin, as the amount axis counts them (`u128`: a tick may pass
/// `i64::MAX`).
const COIN: u128 = UNITS_PER_COIN as u128;
/// At most this many amount steps above zero.
const AMOUNT_STEPS: u128 = 4;
/// At most this many time ticks (7 days: one a day).
const TIME_TICKS: usize = 7;
/// Hours between time ticks, the first that keeps within [`TIME_TICKS`].
const TIME_STEPS: [i64; 8] = [1, 2, 3, 6, 12, 24, 48, 168];

/// Pixel layout: the plot's top and height, and the rows of the time labels below it.
const PLOT_TOP: f64 = 10.0;
const PLOT_HEIGHT: f64 = 140.0;
const TIME_ROW: f64 = PLOT_TOP + PLOT_HEIGHT + 16.0;
const DATE_ROW: f64 = TIME_ROW + 15.0;
const HEIGHT: f64 = DATE_ROW + 8.0;
/// Width of one label character at the labels' 12 px (system-ui digits are narrower).
const CHAR_PX: usize = 7;

/// What a chart's values are: how its amount ticks and bar titles read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Smallest units, read in coins.
    Coins,
    /// A plain number (a pool's score).
    Score,
    /// A validator's score: 1 online, 0 offline.
    Online,
}

impl Measure {
    /// The top of a chart with nothing above zero: one coin, one point.
    fn empty_top(self) -> u128 {
        match self {
            Measure::Coins => COIN,
            Measure::Score | Measure::Online => 1,
        }
    }

    fn tick(self, value: u128) -> String {
        match self {
            Measure::Coins => coin_label(value),
            Measure::Score => value.to_string(),
            Measure::Online => online(value > 0),
        }
    }

    /// A bar's exact value, for its title.
    fn title(self, value: i64) -> String {
        match self {
            Measure::Coins => coins_text(value),
            Measure::Score => value.to_string(),
            Measure::Online => online(value > 0),
        }
    }
}

fn online(yes: bool) -> String {
    if yes { "online" } else { "offline" }.into()
}

/// Coins from smallest units, exactly, without trailing zeros: `150000000` → `1.5`.
pub fn coin_label(units: u128) -> String {
    let (whole, fraction) = (units / COIN, units % COIN);
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:0width$}", width = DECIMALS as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// The amount axis for values up to `max`: `0, step, 2·step, … top`, with `step` 1, 2 or 5 ×
/// 10^k smallest units and at most [`AMOUNT_STEPS`] steps, `top` the first multiple reaching
/// `max`. Nothing above zero: `0, empty_top`. Integers throughout (`u128`: no overflow even
/// for `i64::MAX`).
pub fn amount_ticks(max: u128, empty_top: u128) -> Vec<u128> {
    if max == 0 {
        return vec![0, empty_top];
    }
    let mut power: u128 = 1;
    loop {
        for mantissa in [1, 2, 5] {
            let step = mantissa * power;
            let steps = max.div_ceil(step);
            if steps <= AMOUNT_STEPS {
                return (0..=steps).map(|i| i * step).collect();
            }
        }
        power *= 10;
    }
}

/// A tick of the time axis: at the start of bar `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeTick {
    pub index: usize,
    /// `HH:00` (UTC), or the day of the month when ticks are whole days apart.
    pub label: String,
    /// Under the first tick and wherever it changes: the date (`2 Dec`), or the month when
    /// ticks are whole days apart (seven dates side by side do not fit a phone).
    pub date: Option<String>,
}

/// The time axis of `hours`: ticks on the UTC hours that are multiples of the first step of
/// [`TIME_STEPS`] giving at most [`TIME_TICKS`] ticks (24 h: every 6 h; 48 h: 12 h; 7 days:
/// each midnight), each labelled with its hour (or day), and with its date (or month) where it
/// changes.
pub fn time_ticks(hours: Hours) -> Vec<TimeTick> {
    let step = TIME_STEPS
        .into_iter()
        .find(|step| hours.count.div_ceil(*step as usize) <= TIME_TICKS)
        .unwrap_or(TIME_STEPS[TIME_STEPS.len() - 1]);
    let (label, below) = if step % 24 == 0 {
        ("%-d", "%b")
    } else {
        ("%H:%M", "%-d %b")
    };
    let mut ticks = Vec::new();
    let mut last_below = None;
    for index in 0..hours.count {
        let ms = hours.first + index as i64 * HOUR_MS;
        if ms.rem_euclid(step * HOUR_MS) != 0 {
            continue;
        }
        let Some(time) = Utc.timestamp_millis_opt(ms).single() else {
            continue;
        };
        let under = time.format(below).to_string();
        let date = (last_below.as_ref() != Some(&under)).then(|| under.clone());
        last_below = Some(under);
        ticks.push(TimeTick {
            index,
            label: time.format(label).to_string(),
            date,
        });
    }
    ticks
}

/// Where a label sits along the axis, so that one at an edge stays inside the chart.
fn anchor(percent: f64) -> &'static str {
    if percent < 6.0 {
        "start"
    } else if percent > 94.0 {
        "end"
    } else {
        "middle"
    }
}

/// An SVG bar per hour of `hours` (none where a value is `None`), with both axes. Each bar's
/// title holds its hour and exact value; the tick labels are `text.amount` and `text.time`
/// (`text.date` below the time where the day changes).
pub fn bar_chart(
    id: &str,
    label: &str,
    hours: Hours,
    values: &[Option<i64>],
    measure: Measure,
) -> Markup {
    let max = values
        .iter()
        .flatten()
        .map(|v| v.max(&0).unsigned_abs())
        .max();
    let amounts = amount_ticks(u128::from(max.unwrap_or(0)), measure.empty_top());
    let top = *amounts.last().expect("at least two ticks") as f64;
    let y = |value: f64| PLOT_TOP + PLOT_HEIGHT * (1.0 - value / top);
    let labels: Vec<String> = amounts.iter().map(|t| measure.tick(*t)).collect();
    let gutter = labels.iter().map(String::len).max().unwrap_or(1).max(3) * CHAR_PX + 10;
    let slot = 100.0 / values.len().max(1) as f64;
    let bottom = PLOT_TOP + PLOT_HEIGHT;
    html! {
        svg.chart id=(id) role="img" aria-label=(label) height=(HEIGHT) style={ "padding-left:" (gutter) "px" } {
            @for (tick, text) in amounts.iter().zip(&labels) {
                @let at = format!("{:.1}", y(*tick as f64));
                line.grid x1="0" x2="100%" y1=(at) y2=(at) {}
                text.amount x="-6" y=(format!("{:.1}", y(*tick as f64) + 4.0)) text-anchor="end" { (text) }
            }
            text.unit x="-6" y=(TIME_ROW) text-anchor="end" { "UTC" }
            @for (i, value) in values.iter().enumerate() {
                @if let Some(value) = value {
                    @let height = (*value as f64 / top * PLOT_HEIGHT).max(if *value > 0 { 1.0 } else { 0.0 });
                    @let hour = hours.first + i as i64 * HOUR_MS;
                    rect x={ (format!("{:.3}", i as f64 * slot + slot * 0.1)) "%" } y=(format!("{:.2}", bottom - height))
                        width={ (format!("{:.3}", slot * 0.8)) "%" } height=(format!("{height:.2}")) {
                        title { (when(Some(bson::DateTime::from_millis(hour)))) ": " (measure.title(*value)) }
                    }
                }
            }
            line.axis x1="0" x2="100%" y1=(bottom) y2=(bottom) {}
            @for tick in time_ticks(hours) {
                @let percent = tick.index as f64 * slot;
                @let x = format!("{percent:.3}%");
                line.axis x1=(x) x2=(x) y1=(bottom) y2=(bottom + 5.0) {}
                text.time x=(x) y=(TIME_ROW) text-anchor=(anchor(percent)) { (tick.label) }
                @if let Some(date) = &tick.date {
                    text.date x=(x) y=(DATE_ROW) text-anchor=(anchor(percent)) { (date) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::DateTime;

    #[test]
    fn amount_steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(amount_ticks(7, 1), vec![0, 2, 4, 6, 8]);
        assert_eq!(amount_ticks(4, 1), vec![0, 1, 2, 3, 4]);
        assert_eq!(amount_ticks(100, 1), vec![0, 50, 100]);
        assert_eq!(amount_ticks(101, 1), vec![0, 50, 100, 150]);
        assert_eq!(amount_ticks(18, 1), vec![0, 5, 10, 15, 20]);
        // 12.5 coins: steps of 5 coins.
        let ticks = amount_ticks(1_250_000_000, COIN);
        assert_eq!(ticks, vec![0, 5 * COIN, 10 * COIN, 15 * COIN]);
    }

    #[test]
    fn a_zero_series_gets_a_unit_scale() {
        assert_eq!(amount_ticks(0, COIN), vec![0, COIN]);
        assert_eq!(amount_ticks(0, 1), vec![0, 1]);
    }

    #[test]
    fn a_single_huge_bar_is_covered_without_overflow() {
        let max = i64::MAX as u128;
        let ticks = amount_ticks(max, COIN);
        assert!(
            ticks.len() <= 5 && *ticks.last().unwrap() >= max,
            "{ticks:?}"
        );
        assert_eq!(ticks[1], 5_000_000_000_000_000_000);
        assert_eq!(coin_label(ticks[1]), "50000000000");
    }

    #[test]
    fn coin_labels_are_exact_decimals() {
        assert_eq!(amount_ticks(3, COIN), vec![0, 1, 2, 3]);
        let labels: Vec<String> = [0, 1, 2, 3].map(coin_label).into();
        assert_eq!(labels, ["0", "0.00000001", "0.00000002", "0.00000003"]);
        assert_eq!(coin_label(150_000_000), "1.5");
        assert_eq!(coin_label(2_000_000), "0.02");
        assert_eq!(coin_label(5 * COIN), "5");
    }

    /// `count` hours ending with the one at `day` days and `hour` hours past the epoch.
    fn hours(day: i64, hour: i64, count: usize) -> Hours {
        Hours::ending_at(DateTime::from_millis((day * 24 + hour) * HOUR_MS), count)
    }

    fn labels(ticks: &[TimeTick]) -> Vec<(usize, &str, Option<&str>)> {
        ticks
            .iter()
            .map(|t| (t.index, t.label.as_str(), t.date.as_deref()))
            .collect()
    }

    #[test]
    fn a_day_has_a_tick_every_six_hours_with_the_date_where_it_changes() {
        // 24 hours ending 2026-12-02 14:00 (day 20789): from 1 Dec 15:00.
        let ticks = time_ticks(hours(20_789, 14, 24));
        assert_eq!(
            labels(&ticks),
            vec![
                (3, "18:00", Some("1 Dec")),
                (9, "00:00", Some("2 Dec")),
                (15, "06:00", None),
                (21, "12:00", None),
            ]
        );
    }

    #[test]
    fn longer_charts_space_their_ticks_more() {
        let two_days = time_ticks(hours(20_789, 14, 48));
        assert_eq!(
            labels(&two_days),
            vec![
                (9, "00:00", Some("1 Dec")),
                (21, "12:00", None),
                (33, "00:00", Some("2 Dec")),
                (45, "12:00", None),
            ]
        );
        let week = time_ticks(hours(20_789, 14, 7 * 24));
        assert_eq!(
            labels(&week),
            vec![
                (9, "26", Some("Nov")),
                (33, "27", None),
                (57, "28", None),
                (81, "29", None),
                (105, "30", None),
                (129, "1", Some("Dec")),
                (153, "2", None),
            ]
        );
        let few = time_ticks(hours(20_789, 14, 3));
        assert_eq!(
            labels(&few),
            vec![
                (0, "12:00", Some("2 Dec")),
                (1, "13:00", None),
                (2, "14:00", None)
            ]
        );
    }

    #[test]
    fn the_svg_carries_its_labels_as_text_and_one_bar_per_value() {
        let values = [Some(0), None, Some(1_250_000_000)];
        let svg =
            bar_chart("c", "income", hours(20_789, 14, 3), &values, Measure::Coins).into_string();
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
        for label in [">0<", ">5<", ">10<", ">15<", ">12:00<", ">2 Dec<", ">UTC<"] {
            assert!(svg.contains(label), "{label} in {svg}");
        }
        assert!(svg.contains(": 12.50000000</title>"), "{svg}");
        assert!(!svg.contains("preserveAspectRatio") && !svg.contains("viewBox"));
    }
}
