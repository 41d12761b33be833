//! Cron schedules as the Kubernetes CronJob controller reads them (five fields, or a `@`
//! descriptor), checked before a CronJob is applied: the API server of Kubernetes 1.20 accepts
//! any string and the CronJob then silently never runs.

/// Checks a CronJob schedule; the error says which field is wrong and why.
pub fn check_schedule(schedule: &str) -> Result<(), String> {
    let schedule = schedule.trim();
    if schedule.is_empty() {
        return Err("the schedule is empty".into());
    }
    if let Some(descriptor) = schedule.strip_prefix('@') {
        return match descriptor {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            _ => Err(format!(
                "unknown descriptor @{descriptor} (use @yearly, @monthly, @weekly, @daily or @hourly)"
            )),
        };
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), got {}",
            fields.len()
        ));
    }
    for (text, field) in fields.iter().zip(FIELDS.iter()) {
        check_field(text, field).map_err(|why| format!("{} field {text:?}: {why}", field.name))?;
    }
    Ok(())
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: MONTHS,
    },
    Field {
        name: "day-of-week",
        min: 0,
        max: 6,
        names: WEEKDAYS,
    },
];

fn check_field(text: &str, field: &Field) -> Result<(), String> {
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (part, None),
        };
        if let Some(step) = step {
            let step: u32 = step
                .parse()
                .map_err(|_| format!("step {step:?} is not a number"))?;
            if step == 0 {
                return Err("a step of 0 never fires".into());
            }
        }
        if range == "*" || range == "?" {
            continue;
        }
        let (low, high) = match range.split_once('-') {
            Some((low, high)) => (value(low, field)?, value(high, field)?),
            None => {
                let single = value(range, field)?;
                (single, single)
            }
        };
        if low > high {
            return Err(format!("range {range:?} runs backwards"));
        }
    }
    Ok(())
}

fn value(text: &str, field: &Field) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(index) = field.names.iter().position(|name| *name == lower) {
        return Ok(field.min + index as u32);
    }
    let number: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if number < field.min || number > field.max {
        return Err(format!("{number} is outside {}-{}", field.min, field.max));
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::check_schedule;

    #[test]
    fn accepts_what_the_cronjob_controller_accepts() {
        for ok in [
            "* * * * *",
            "*/10 * * * *",
            "0 3 * * mon-fri",
            "5,35 0-23/2 1 jan,JUL *",
            "0 0 ? * 0",
            "@hourly",
            "@daily",
            "  15 * * * *  ",
        ] {
            assert_eq!(check_schedule(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_with_a_reason_that_names_the_field() {
        for (bad, says) in [
            ("", "empty"),
            ("* * * *", "expected 5 fields"),
            ("* * * * * *", "expected 5 fields"),
            ("60 * * * *", "minute field \"60\": 60 is outside 0-59"),
            ("* 24 * * *", "hour field"),
            ("* * 0 * *", "day-of-month field"),
            ("* * * 13 *", "month field"),
            ("* * * * 7", "day-of-week field"),
            ("*/0 * * * *", "a step of 0"),
            ("*/x * * * *", "step \"x\""),
            ("5-1 * * * *", "runs backwards"),
            ("every minute", "expected 5 fields"),
            ("@every 5m", "unknown descriptor"),
            ("a * * * *", "\"a\" is not a number"),
        ] {
            let error = check_schedule(bad).expect_err(bad);
            assert!(error.contains(says), "{bad:?}: {error}");
        }
    }
}
