//! Dovecot's forms of numbers, time intervals and sizes in settings
//! (`str_to_uint`, `settings_get_time`, `settings_get_time_msecs`,
//! `settings_get_size`), so that the plugin's driver line and the relay's
//! command line read values the way a Dovecot administrator writes them.

/// Dovecot's `str_to_uint`: decimal digits only, no sign, fits in 32 bits.
pub fn parse_uint(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Leading decimal digits and the rest, like `str_parse_uintmax`.
fn split_number(s: &str) -> Option<(u64, &str)> {
    let end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    Some((s[..end].parse().ok()?, s[end..].trim_start_matches(' ')))
}

fn unit_is(unit: &str, full: &str) -> bool {
    unit.len() <= full.len() && full[..unit.len()].eq_ignore_ascii_case(unit)
}

/// Dovecot's `settings_get_time` (seconds; a unit is required unless the value is 0).
pub fn parse_time_secs(s: &str) -> Result<u32, String> {
    parse_time(s, false)
}

/// Dovecot's `settings_get_time_msecs` (milliseconds).
pub fn parse_time_msecs(s: &str) -> Result<u32, String> {
    parse_time(s, true)
}

fn parse_time(s: &str, millis: bool) -> Result<u32, String> {
    let (mut num, unit) = split_number(s).ok_or_else(|| format!("Invalid time interval: {s}"))?;
    if unit.is_empty() && num != 0 {
        return Err(format!(
            "Time interval '{s}' is missing units (add e.g. 's' for seconds)"
        ));
    }
    let base: u64 = if millis { 1000 } else { 1 };
    let mut multiply = base;
    let mut rest = unit;
    match unit.bytes().next().map(|b| b.to_ascii_uppercase()) {
        Some(b'S') if unit_is(unit, "secs") || unit_is(unit, "seconds") => rest = "",
        Some(b'M') => {
            multiply = base * 60;
            if unit_is(unit, "mins") || unit_is(unit, "minutes") {
                rest = "";
            } else if ["msecs", "mseconds", "millisecs", "milliseconds"]
                .iter()
                .any(|f| unit_is(unit, f))
            {
                if !millis && num % 1000 != 0 {
                    return Err(format!("Milliseconds not supported for this setting: {s}"));
                }
                if !millis {
                    num /= 1000;
                }
                multiply = 1;
                rest = "";
            }
        }
        Some(b'H') => {
            multiply = base * 3600;
            if unit_is(unit, "hours") {
                rest = "";
            }
        }
        Some(b'D') => {
            multiply = base * 86400;
            if unit_is(unit, "days") {
                rest = "";
            }
        }
        Some(b'W') => {
            multiply = base * 7 * 86400;
            if unit_is(unit, "weeks") {
                rest = "";
            }
        }
        _ => {}
    }
    if !rest.is_empty() {
        return Err(format!("Invalid time interval: {s}"));
    }
    num.checked_mul(multiply)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| format!("Time interval is too large: {s}"))
}

/// Dovecot's `settings_get_size`: a number with an optional B/K/M/G/T unit.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, unit) = split_number(s).ok_or_else(|| format!("Invalid size: {s}"))?;
    let mut chars = unit.chars();
    let multiply: u64 = match chars.next().map(|c| c.to_ascii_uppercase()) {
        None => 1,
        Some('B') => 1,
        Some('K') => 1 << 10,
        Some('M') => 1 << 20,
        Some('G') => 1 << 30,
        Some('T') => 1 << 40,
        Some(_) => return Err(format!("Invalid size: {s}")),
    };
    let mut rest: &str = chars.as_str();
    if multiply > 1 {
        rest = rest.strip_prefix(['i', 'I']).unwrap_or(rest);
        rest = rest.strip_prefix(['b', 'B']).unwrap_or(rest);
    }
    if !rest.is_empty() {
        return Err(format!("Invalid size: {s}"));
    }
    num.checked_mul(multiply)
        .ok_or_else(|| format!("Size is too large: {s}"))
}

#[cfg(test)]
mod tests;
