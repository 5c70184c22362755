//! printf-style number formatting used by Ultralytics' validation table (`%11.3g`, `%11i`, `%22s`).

/// C/Python `%.{precision}g` formatting of a finite or non-finite `f64`.
pub fn format_g(v: f64, precision: usize) -> String {
    if v.is_nan() {
        return "nan".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".to_string() } else { "-inf".to_string() };
    }
    let p = precision.max(1);
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".to_string() } else { "0".to_string() };
    }
    // exponent after rounding to p significant digits
    let e_repr = format!("{:.*e}", p - 1, v);
    let (mant, exp) = e_repr.split_once('e').unwrap_or((&e_repr, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= p as i32 {
        let mant = strip_zeros(mant);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        strip_zeros(&format!("{:.*}", decimals, v))
    }
}

fn strip_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_printf() {
        assert_eq!(format_g(0.5, 3), "0.5");
        assert_eq!(format_g(0.12345, 3), "0.123");
        assert_eq!(format_g(1.0, 3), "1");
        assert_eq!(format_g(0.0, 3), "0");
        assert_eq!(format_g(0.000123456, 3), "0.000123");
        assert_eq!(format_g(0.0000123456, 3), "1.23e-05");
        assert_eq!(format_g(0.9996, 3), "1");
        assert_eq!(format_g(1234.0, 3), "1.23e+03");
        assert_eq!(format_g(123.4, 3), "123");
        assert_eq!(format_g(0.0999999, 3), "0.1");
    }
}
