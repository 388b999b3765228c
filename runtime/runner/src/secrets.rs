//! Secret values: `MERIDIAN_SECRET_<NAME>` from the environment, or a secrets file in dotenv
//! form (see [`parse_dotenv`]). Never journaled; every value is masked wherever it would be shown.

use std::collections::BTreeMap;
use std::path::Path;

use meridian_model::Workflow;

use crate::RunnerError;

/// The environment variable that gives secret `name`.
pub fn env_name(name: &str) -> String {
    format!("MERIDIAN_SECRET_{}", name.to_uppercase().replace('-', "_"))
}

/// The entries of a secrets file (none without one), read with a cap.
pub fn read_file(file: Option<&Path>) -> Result<BTreeMap<String, String>, RunnerError> {
    match file {
        Some(f) => {
            let text = crate::files::read_capped(f, "secrets file", crate::files::SECRETS_LIMIT)?;
            parse_dotenv(&text, &f.display().to_string())
        }
        None => Ok(BTreeMap::new()),
    }
}

/// A secret's value: `MERIDIAN_SECRET_<NAME>` wins over the file's entry (`from_file`, a
/// parsed secrets file).
pub fn value(name: &str, from_file: &BTreeMap<String, String>) -> Option<String> {
    std::env::var(env_name(name))
        .ok()
        .or_else(|| from_file.get(name).cloned())
}

/// The values of the workflow's declared secrets; the environment wins over the file. A
/// declared secret with no value is an error naming both ways to give it.
pub fn load(wf: &Workflow, file: Option<&Path>) -> Result<BTreeMap<String, String>, RunnerError> {
    let from_file = read_file(file)?;
    let mut out = BTreeMap::new();
    let mut missing = Vec::new();
    for s in &wf.secrets {
        let env = env_name(&s.value);
        match value(&s.value, &from_file) {
            Some(v) => {
                out.insert(s.value.clone(), v);
            }
            None => missing.push(format!(
                "secret `{}` has no value: set {env} in the environment, or put `{}=…` in the secrets file (`--secrets-file`; a server's `secrets-file`)",
                s.value, s.value
            )),
        }
    }
    if !missing.is_empty() {
        return Err(RunnerError::Problems(missing));
    }
    Ok(out)
}

/// A secrets file in dotenv form, as a shell would read it without running anything:
///
/// - `NAME=value`, optionally `export NAME=value`; `NAME` is letters, digits and `_`, not
///   starting with a digit (as in a workflow's `secrets:`); spaces around `=` are allowed;
/// - a UTF-8 byte order mark at the start (some editors write one) is skipped;
/// - blank lines and lines starting with `#` are skipped; after a value, ` # …` is a comment;
/// - `'single quoted'`: every character as written;
/// - `"double quoted"`: `\\`, `\"`, `\$`, `` \` `` and `\n` escapes;
/// - unquoted: the value up to the first space, without quotes, `\`, `$` or `` ` ``.
///
/// Anything else — a value a shell would expand (`$X`, `` `cmd` ``), an unclosed quote, text
/// after a value, a name given twice — is an error naming `file:line`, never a guess.
pub fn parse_dotenv(text: &str, file: &str) -> Result<BTreeMap<String, String>, RunnerError> {
    let mut out = BTreeMap::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let err = |what: &str| RunnerError::Invalid(format!("{file}:{n}: {what}"));
        let line = raw.strip_suffix('\r').unwrap_or(raw).trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export")
            .filter(|rest| rest.starts_with([' ', '\t']))
            .map_or(line, str::trim_start);
        let Some((name, value)) = line.split_once('=') else {
            return Err(err("expected NAME=value (or `export NAME=value`)"));
        };
        let name = name.trim_end();
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(err(&format!(
                "`{}` is not a secret name (letters, digits and `_`, not starting with a digit, as a workflow's `secrets:` declares them)",
                name.escape_debug()
            )));
        }
        let trimmed = value.trim_start();
        // `NAME= # note`: a ` #` starts a comment, here as after a value.
        let value = if trimmed.starts_with('#') && trimmed.len() < value.len() {
            String::new()
        } else {
            value_of(trimmed).map_err(|e| err(&e))?
        };
        if let Some(first) = seen.insert(name.to_string(), n) {
            return Err(err(&format!(
                "`{name}` is given twice (first on line {first}); keep one"
            )));
        }
        out.insert(name.to_string(), value);
    }
    Ok(out)
}

/// The value after `=`: quoted or bare, then nothing but an optional ` # comment`.
fn value_of(v: &str) -> Result<String, String> {
    let (value, rest) = match v.chars().next() {
        Some('\'') => {
            let body = &v[1..];
            let end = body
                .find('\'')
                .ok_or("unclosed `'`: close the quote on the same line")?;
            (body[..end].to_string(), &body[end + 1..])
        }
        Some('"') => double_quoted(&v[1..])?,
        _ => {
            let end = v.find([' ', '\t']).unwrap_or(v.len());
            let (bare, rest) = v.split_at(end);
            if let Some(c) = bare
                .chars()
                .find(|c| matches!(c, '"' | '\'' | '\\' | '$' | '`'))
            {
                return Err(format!(
                    "`{c}` in an unquoted value: put the value in single quotes to take it as written"
                ));
            }
            (bare.to_string(), rest)
        }
    };
    let rest = rest.trim_start();
    if !(rest.is_empty() || rest.starts_with('#')) {
        return Err(
            "text after the value: quote a value that contains spaces, start a comment with ` #`"
                .into(),
        );
    }
    Ok(value)
}

/// The body of a double-quoted value (after the opening `"`) and what follows its closing quote.
fn double_quoted(body: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &body[i + 1..])),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some(c @ ('\\' | '"' | '$' | '`')) => value.push(c),
                Some('n') => value.push('\n'),
                Some(c) => {
                    return Err(format!(
                        "unknown escape `\\{c}` in double quotes (known: \\\\ \\\" \\$ \\` \\n); use single quotes to take text as written"
                    ));
                }
                None => break,
            },
            '$' | '`' => {
                return Err(format!(
                    "`{c}` in double quotes would be expanded by a shell and is not here: write `\\{c}`, or use single quotes"
                ));
            }
            c => value.push(c),
        }
    }
    Err("unclosed `\"`: close the quote on the same line".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
        parse_dotenv(text, "s.env").map_err(|e| e.to_string())
    }

    #[test]
    fn dotenv_forms_are_read_as_a_shell_would() {
        let m = parse(
            "# keys\n\nA=plain\nexport B=exported\n  C = spaced  \nD='it\"s'\nE='a b # c $X'\n\
             F=\"x \\\"y\\\" \\$Z\\nw\"\nG= # empty, then a comment\nH=tail # comment\nI=a#b\r\nexport_J=1\n",
        )
        .unwrap();
        let want = [
            ("A", "plain"),
            ("B", "exported"),
            ("C", "spaced"),
            ("D", "it\"s"),
            ("E", "a b # c $X"),
            ("F", "x \"y\" $Z\nw"),
            ("G", ""),
            ("H", "tail"),
            ("I", "a#b"),
            ("export_J", "1"),
        ];
        let got: Vec<(&str, &str)> = m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_byte_order_mark_at_the_start_is_skipped() {
        let m = parse("\u{feff}TOKEN=t0k\n").unwrap();
        assert_eq!(m.get("TOKEN").map(String::as_str), Some("t0k"));
    }

    #[test]
    fn what_is_not_understood_is_refused_naming_the_line() {
        let cases = [
            ("A=1\nnot a pair\n", "s.env:2: expected NAME=value"),
            (
                "A=1\nA=2\n",
                "s.env:2: `A` is given twice (first on line 1)",
            ),
            ("A='open\n", "s.env:1: unclosed `'`"),
            ("A=\"open\n", "s.env:1: unclosed `\"`"),
            ("A=two words\n", "s.env:1: text after the value"),
            ("A=$HOME\n", "s.env:1: `$` in an unquoted value"),
            ("A=\"${HOME}\"\n", "s.env:1: `$` in double quotes"),
            ("A=\"\\t\"\n", "s.env:1: unknown escape `\\t`"),
            ("A='x' y\n", "s.env:1: text after the value"),
            ("1A=x\n", "s.env:1: `1A` is not a secret name"),
            ("MY-KEY=x\n", "s.env:1: `MY-KEY` is not a secret name"),
            ("export =x\n", "s.env:1: `` is not a secret name"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }
}
