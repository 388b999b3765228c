//! PostgreSQL wire values ⇄ WIT `sql.value`. tokio-postgres speaks the binary format for every
//! parameter and column, so the conversions are written here against the documented binary
//! encodings (`src/backend/utils/adt/*.c` `*_send`/`*_recv`). Types not covered produce an
//! `unsupported` error that names the cast to add in SQL.

use std::error::Error as StdError;
use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};

use crate::bindings::meridian::step::sql::Value;

type BoxError = Box<dyn StdError + Sync + Send>;

/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_DAYS: i64 = 10_957;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A parameter, converted to whatever type the server inferred for its placeholder.
#[derive(Debug)]
pub(crate) struct Param<'a>(pub(crate) &'a Value);

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        encode(self.0, ty, out)
    }

    fn accepts(_: &Type) -> bool {
        // Every type is accepted here; `encode` refuses the combinations it cannot convert,
        // with a message naming the cast to use.
        true
    }

    to_sql_checked!();
}

fn cannot(what: &str, ty: &Type) -> BoxError {
    format!("cannot bind {what} to a parameter of type {ty}; cast the placeholder in SQL, e.g. $1::text::{ty}").into()
}

fn is_text_like(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    ) || matches!(ty.kind(), Kind::Enum(_))
}

fn encode(v: &Value, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
    if let Kind::Domain(inner) = ty.kind() {
        return encode(v, inner, out);
    }
    match v {
        Value::Null => return Ok(IsNull::Yes),
        Value::Boolean(b) => match *ty {
            Type::BOOL => out.put_u8(u8::from(*b)),
            _ if is_text_like(ty) => out.put_slice(if *b { b"true" } else { b"false" }),
            _ => return Err(cannot("a boolean", ty)),
        },
        Value::Int(i) => encode_int(*i, ty, out)?,
        Value::Float(f) => match *ty {
            #[allow(clippy::cast_possible_truncation)]
            Type::FLOAT4 => out.put_f32(*f as f32),
            Type::FLOAT8 => out.put_f64(*f),
            Type::NUMERIC => encode_numeric(&f.to_string(), out)?,
            _ if is_text_like(ty) => out.put_slice(f.to_string().as_bytes()),
            _ => return Err(cannot("a float", ty)),
        },
        Value::Text(s) => encode_text(s, ty, out)?,
        Value::Bytes(b) => match *ty {
            Type::BYTEA => out.put_slice(b),
            _ => return Err(cannot("bytes", ty)),
        },
        Value::Json(s) => match *ty {
            Type::JSON => out.put_slice(s.as_bytes()),
            Type::JSONB => {
                out.put_u8(1);
                out.put_slice(s.as_bytes());
            }
            _ if is_text_like(ty) => out.put_slice(s.as_bytes()),
            _ => return Err(cannot("JSON", ty)),
        },
    }
    Ok(IsNull::No)
}

fn encode_int(i: i64, ty: &Type, out: &mut BytesMut) -> Result<(), BoxError> {
    let range =
        |_| -> BoxError { format!("{i} is out of range for a parameter of type {ty}").into() };
    match *ty {
        Type::INT2 => out.put_i16(i16::try_from(i).map_err(range)?),
        Type::INT4 => out.put_i32(i32::try_from(i).map_err(range)?),
        Type::INT8 => out.put_i64(i),
        Type::OID | Type::XID | Type::CID => out.put_u32(u32::try_from(i).map_err(range)?),
        #[allow(clippy::cast_precision_loss)]
        Type::FLOAT4 => out.put_f32(i as f32),
        #[allow(clippy::cast_precision_loss)]
        Type::FLOAT8 => out.put_f64(i as f64),
        Type::NUMERIC => encode_numeric(&i.to_string(), out)?,
        _ if is_text_like(ty) => out.put_slice(i.to_string().as_bytes()),
        _ => return Err(cannot("an integer", ty)),
    }
    Ok(())
}

fn encode_text(s: &str, ty: &Type, out: &mut BytesMut) -> Result<(), BoxError> {
    let bad = |what: &str| -> BoxError {
        format!("`{s}` is not a valid {what} for a parameter of type {ty}").into()
    };
    match *ty {
        _ if is_text_like(ty) => out.put_slice(s.as_bytes()),
        Type::JSON => out.put_slice(s.as_bytes()),
        Type::JSONB => {
            out.put_u8(1);
            out.put_slice(s.as_bytes());
        }
        Type::NUMERIC => encode_numeric(s, out)?,
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => {
            encode_int(s.trim().parse().map_err(|_| bad("integer"))?, ty, out)?
        }
        Type::FLOAT4 | Type::FLOAT8 => {
            let f: f64 = s.trim().parse().map_err(|_| bad("number"))?;
            encode(&Value::Float(f), ty, out)?;
        }
        Type::BOOL => match s.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "on" | "1" => out.put_u8(1),
            "f" | "false" | "no" | "off" | "0" => out.put_u8(0),
            _ => return Err(bad("boolean")),
        },
        Type::PG_LSN => out.put_u64(parse_lsn(s).ok_or_else(|| bad("LSN (like 0/16B3748)"))?),
        Type::UUID => {
            let hex: String = s.chars().filter(|c| *c != '-').collect();
            if hex.len() != 32 {
                return Err(bad("UUID"));
            }
            for i in 0..16 {
                out.put_u8(
                    u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad("UUID"))?,
                );
            }
        }
        _ => return Err(cannot("text", ty)),
    }
    Ok(())
}

fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// Writes a decimal string (`-12.3400`, `NaN`) in `numeric`'s binary form: digit count, weight,
/// sign, display scale, then base-10000 digits.
fn encode_numeric(s: &str, out: &mut BytesMut) -> Result<(), BoxError> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("nan") {
        out.put_slice(&[0, 0, 0, 0, 0xC0, 0, 0, 0]);
        return Ok(());
    }
    let bad = || -> BoxError {
        format!(
            "`{s}` is not a decimal number (numeric parameters take digits, a sign and a point)"
        )
        .into()
    };
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let dscale = u16::try_from(frac.len()).map_err(|_| bad())?;
    let int = int.trim_start_matches('0');
    let int_pad = (4 - int.len() % 4) % 4;
    let frac_pad = (4 - frac.len() % 4) % 4;
    let all: String = "0".repeat(int_pad) + int + frac + &"0".repeat(frac_pad);
    let mut groups: Vec<i16> = all
        .as_bytes()
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0')))
        .collect();
    let mut weight = i16::try_from((int.len() + int_pad) / 4).map_err(|_| bad())? - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.put_i16(i16::try_from(groups.len()).map_err(|_| bad())?);
    out.put_i16(weight);
    out.put_u16(if neg && !groups.is_empty() { 0x4000 } else { 0 });
    out.put_u16(dscale);
    for g in groups {
        out.put_i16(g);
    }
    Ok(())
}

/// A column value as raw bytes (`None` = NULL); decoded by [`decode`].
pub(crate) struct Raw<'a>(pub(crate) Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Raw(Some(raw)))
    }
    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Raw(None))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

fn be<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    raw.get(..N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("truncated value ({} bytes)", raw.len()))
}

/// Decodes one column value. The error names the column and the cast to use.
pub(crate) fn decode(column: &str, ty: &Type, raw: Option<&[u8]>) -> Result<Value, String> {
    let Some(raw) = raw else {
        return Ok(Value::Null);
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(match ty.kind() {
        Kind::Domain(inner) => return decode(column, inner, Some(raw)),
        Kind::Enum(_) => Value::Text(text(raw)),
        Kind::Array(_) => {
            return Err(format!(
                "column `{column}` is an array ({ty}); convert it in SQL, e.g. to_json({column}) or {column}::text"
            ));
        }
        _ => match *ty {
            Type::BOOL => Value::Boolean(raw.first().copied().unwrap_or(0) != 0),
            Type::INT2 => Value::Int(i16::from_be_bytes(be(raw)?).into()),
            Type::INT4 => Value::Int(i32::from_be_bytes(be(raw)?).into()),
            Type::INT8 => Value::Int(i64::from_be_bytes(be(raw)?)),
            Type::OID | Type::XID | Type::CID => Value::Int(u32::from_be_bytes(be(raw)?).into()),
            Type::XID8 => Value::Int(i64::from_be_bytes(be(raw)?)),
            Type::FLOAT4 => Value::Float(f32::from_be_bytes(be(raw)?).into()),
            Type::FLOAT8 => Value::Float(f64::from_be_bytes(be(raw)?)),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::CHAR => {
                Value::Text(text(raw))
            }
            Type::BYTEA => Value::Bytes(raw.to_vec()),
            Type::JSON => Value::Json(text(raw)),
            Type::JSONB => Value::Json(text(raw.get(1..).unwrap_or_default())),
            Type::NUMERIC => Value::Text(decode_numeric(raw)?),
            Type::PG_LSN => {
                let v = u64::from_be_bytes(be(raw)?);
                Value::Text(format!("{:X}/{:X}", v >> 32, v & 0xffff_ffff))
            }
            Type::UUID => {
                let b: [u8; 16] = be(raw)?;
                let h = hex::encode(b);
                Value::Text(format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                ))
            }
            Type::DATE => Value::Text(format_date(i32::from_be_bytes(be(raw)?))),
            Type::TIME => Value::Text(format_time(i64::from_be_bytes(be(raw)?))),
            Type::TIMESTAMP => Value::Text(format_timestamp(i64::from_be_bytes(be(raw)?), "")),
            Type::TIMESTAMPTZ => Value::Text(format_timestamp(i64::from_be_bytes(be(raw)?), "Z")),
            Type::INTERVAL => Value::Text(format_interval(
                i64::from_be_bytes(be(raw)?),
                i32::from_be_bytes(be(&raw[8..])?),
                i32::from_be_bytes(be(&raw[12..])?),
            )),
            Type::INET | Type::CIDR => Value::Text(format_inet(raw)?),
            _ => {
                return Err(format!(
                    "column `{column}` has type {ty}, which the host does not convert; cast it in SQL, e.g. {column}::text"
                ));
            }
        },
    })
}

fn decode_numeric(raw: &[u8]) -> Result<String, String> {
    let ndigits =
        usize::try_from(i16::from_be_bytes(be(raw)?)).map_err(|_| "bad numeric".to_owned())?;
    let weight = i64::from(i16::from_be_bytes(be(&raw[2..])?));
    let sign = u16::from_be_bytes(be(&raw[4..])?);
    let dscale = usize::from(u16::from_be_bytes(be(&raw[6..])?));
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<i64> = (0..ndigits)
        .map(|i| be::<2>(&raw[8 + 2 * i..]).map(|b| i64::from(i16::from_be_bytes(b))))
        .collect::<Result<_, _>>()?;
    // Digit k has exponent (weight - k) in base 10000.
    let digit = |k: i64| {
        usize::try_from(k)
            .ok()
            .and_then(|k| digits.get(k))
            .copied()
            .unwrap_or(0)
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                let _ = write!(s, "{}", digit(k));
            } else {
                let _ = write!(s, "{:04}", digit(k));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut k = weight + 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", digit(k));
            k += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Ok(s)
}

/// Proleptic Gregorian date from days since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn format_date(days: i32) -> String {
    match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        d => {
            let (y, m, d) = civil(i64::from(d) + PG_EPOCH_DAYS);
            format!("{y:04}-{m:02}-{d:02}")
        }
    }
}

fn format_time(micros: i64) -> String {
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let mut s = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac != 0 {
        let _ = write!(s, ".{frac:06}");
        while s.ends_with('0') {
            s.pop();
        }
    }
    s
}

/// RFC 3339 (`T` separator); `zone` is `Z` for timestamptz (binary values are UTC).
fn format_timestamp(micros: i64, zone: &str) -> String {
    match micros {
        i64::MAX => "infinity".into(),
        i64::MIN => "-infinity".into(),
        m => {
            let days = m.div_euclid(MICROS_PER_DAY);
            let (y, mo, d) = civil(days + PG_EPOCH_DAYS);
            format!(
                "{y:04}-{mo:02}-{d:02}T{}{zone}",
                format_time(m.rem_euclid(MICROS_PER_DAY))
            )
        }
    }
}

/// PostgreSQL's default interval style, e.g. `1 year 2 mons 3 days 04:05:06.5`.
fn format_interval(micros: i64, days: i32, months: i32) -> String {
    let mut parts = Vec::new();
    let plural =
        |n: i64, one: &str, many: &str| format!("{n} {}", if n.abs() == 1 { one } else { many });
    let (years, mons) = (i64::from(months) / 12, i64::from(months) % 12);
    if years != 0 {
        parts.push(plural(years, "year", "years"));
    }
    if mons != 0 {
        parts.push(plural(mons, "mon", "mons"));
    }
    if days != 0 {
        parts.push(plural(days.into(), "day", "days"));
    }
    if micros != 0 || parts.is_empty() {
        let t = format_time(micros.abs());
        parts.push(if micros < 0 { format!("-{t}") } else { t });
    }
    parts.join(" ")
}

fn format_inet(raw: &[u8]) -> Result<String, String> {
    let [family, bits, is_cidr, nb] = be::<4>(raw)?;
    let addr = raw.get(4..4 + usize::from(nb)).ok_or("truncated inet")?;
    let (ip, max): (std::net::IpAddr, u8) = match (family, addr.len()) {
        (2, 4) => (
            std::net::Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).into(),
            32,
        ),
        (3, 16) => (
            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(addr).map_err(|_| "bad inet")?).into(),
            128,
        ),
        _ => return Err("unknown inet family".into()),
    };
    Ok(if is_cidr != 0 || bits != max {
        format!("{ip}/{bits}")
    } else {
        ip.to_string()
    })
}

/// A parameter as JSON, for plan records.
pub(crate) fn value_to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Boolean(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::Float(f) => (*f).into(),
        Value::Text(s) => s.clone().into(),
        Value::Bytes(b) => format!("\\x{}", hex::encode(b)).into(),
        Value::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| s.clone().into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_roundtrip(s: &str) -> String {
        let mut b = BytesMut::new();
        encode_numeric(s, &mut b).unwrap();
        decode_numeric(&b).unwrap()
    }

    #[test]
    fn numeric() {
        for (input, want) in [
            ("0", "0"),
            ("12345678", "12345678"),
            ("-1.50", "-1.50"),
            ("0.0001", "0.0001"),
            ("0.00001", "0.00001"),
            ("10000", "10000"),
            ("123.456789", "123.456789"),
            ("007.5", "7.5"),
            ("-0", "0"),
            ("NaN", "NaN"),
        ] {
            assert_eq!(numeric_roundtrip(input), want, "{input}");
        }
        assert!(encode_numeric("1e5", &mut BytesMut::new()).is_err());
        // pg_wal_lsn_diff(...) = 16384, as PostgreSQL sends it: 1 digit, weight 1, dscale 0.
        assert_eq!(
            decode_numeric(&[0, 2, 0, 1, 0, 0, 0, 0, 0, 1, 0x19, 0x00]).unwrap(),
            "16400"
        );
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(format_date(0), "2000-01-01");
        assert_eq!(format_date(-1), "1999-12-31");
        assert_eq!(format_date(9_190), "2025-02-28");
        assert_eq!(
            format_timestamp(86_400_000_000 + 3_723_500_000, "Z"),
            "2000-01-02T01:02:03.5Z"
        );
        assert_eq!(format_timestamp(-1, ""), "1999-12-31T23:59:59.999999");
        assert_eq!(
            format_interval(3_723_000_000, 3, 14),
            "1 year 2 mons 3 days 01:02:03"
        );
        assert_eq!(format_interval(0, 0, 0), "00:00:00");
        assert_eq!(format_interval(-1_500_000, 0, 0), "-00:00:01.5");
    }

    #[test]
    fn lsn_uuid_inet() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        let v = decode("l", &Type::PG_LSN, Some(&0x16_B374_D848u64.to_be_bytes())).unwrap();
        assert!(matches!(v, Value::Text(t) if t == "16/B374D848"));
        let mut b = BytesMut::new();
        encode_text("67e55044-10b1-426f-9247-bb680e5fe0c8", &Type::UUID, &mut b).unwrap();
        assert!(
            matches!(decode("u", &Type::UUID, Some(&b)).unwrap(), Value::Text(t) if t == "67e55044-10b1-426f-9247-bb680e5fe0c8")
        );
        assert_eq!(
            format_inet(&[2, 24, 1, 4, 10, 1, 2, 0]).unwrap(),
            "10.1.2.0/24"
        );
        assert_eq!(
            format_inet(&[2, 32, 0, 4, 127, 0, 0, 1]).unwrap(),
            "127.0.0.1"
        );
    }

    #[test]
    fn refusals_name_the_cast() {
        let e = encode(&Value::Bytes(vec![1]), &Type::INT4, &mut BytesMut::new())
            .err()
            .unwrap();
        assert!(e.to_string().contains("$1::text::int4"), "{e}");
        let e = decode("relid", &Type::REGCLASS, Some(&[0, 0, 0, 1])).unwrap_err();
        assert!(e.contains("relid::text"), "{e}");
        let e = encode(&Value::Int(70_000), &Type::INT2, &mut BytesMut::new())
            .err()
            .unwrap();
        assert!(e.to_string().contains("out of range"), "{e}");
    }
}
