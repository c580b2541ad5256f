//! Configuration errors a person can act on: `file:line: key: problem`, with the choices a key
//! takes, a guess at the key meant when one is misspelled, and environment variables named as
//! they are set (`VERIFYD_CODES__LENGTH`).

use std::path::Path;

use figment::Source;
use figment::error::Kind;
use toml::de::{DeTable, DeValue};

/// `VERIFYD_*` variables that are not settings: those of verifyd's own flags, of verifyctl, and
/// of the tests and benchmarks.
const OTHER_VARIABLES: &[&str] = &[
    "CONFIG",
    "LOG_FORMAT",
    "ADDR",
    "API_KEY",
    "CA",
    "CERT",
    "KEY",
];
const OTHER_PREFIXES: &[&str] = &["TEST_", "BENCH_"];

/// Every problem in a figment error, one per line, located.
pub fn describe(error: figment::Error) -> String {
    let mut problems: Vec<String> = error.into_iter().map(|e| describe_one(&e)).collect();
    problems.dedup();
    match problems.len() {
        1 => problems.remove(0),
        n => format!("{n} problems:\n  {}", problems.join("\n  ")),
    }
}

fn describe_one(error: &figment::Error) -> String {
    let key: Vec<String> = error
        .path
        .iter()
        .skip_while(|segment| {
            error
                .profile
                .as_ref()
                .is_some_and(|p| p.as_str().as_str() == segment.as_str())
        })
        .cloned()
        .collect();
    let dotted = key.join(".");
    let problem = problem(&error.kind, key.last().map(String::as_str).unwrap_or(""));
    let source = error.metadata.as_ref().and_then(|m| m.source.as_ref());
    match source {
        Some(Source::File(path)) => {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            // A syntax error comes as a message; the file itself says where.
            if matches!(error.kind, Kind::Message(_))
                && let Some(located) = syntax_error(path, &text)
            {
                return located;
            }
            match line_of(&text, &key) {
                Some(line) => format!("{}:{line}: {dotted}: {problem}", path.display()),
                None => format!("{}: {dotted}: {problem}", path.display()),
            }
        }
        _ if error
            .metadata
            .as_ref()
            .is_some_and(|m| m.name.contains("environment")) =>
        {
            let variable = format!("VERIFYD_{}", key.join("__").to_ascii_uppercase());
            let hint = match &error.kind {
                Kind::InvalidType(_, expected) if expected.starts_with("struct ") => {
                    format!("; set one of its settings instead, as {variable}__<SETTING>")
                }
                _ => String::new(),
            };
            format!("environment variable {variable}: {problem}{hint}")
        }
        _ if dotted.is_empty() => problem,
        _ => format!("{dotted}: {problem}"),
    }
}

/// What is wrong, in words.
fn problem(kind: &Kind, last_key: &str) -> String {
    match kind {
        Kind::UnknownField(found, expected) => {
            let guess = closest(found, expected)
                .map(|g| format!("did you mean `{g}`? "))
                .unwrap_or_default();
            format!(
                "not a setting here; {guess}the settings are: {}",
                expected.join(", ")
            )
        }
        Kind::UnknownVariant(found, expected) => {
            let guess = closest(found, expected)
                .map(|g| format!(" (did you mean `{g}`?)"))
                .unwrap_or_default();
            format!("`{found}` is not one of: {}{guess}", expected.join(", "))
        }
        Kind::InvalidType(actual, expected) => {
            format!("expected {}, found {actual}", in_words(expected))
        }
        Kind::InvalidValue(actual, expected) => format!("expected {expected}, found {actual}"),
        Kind::InvalidLength(length, expected) => {
            format!("expected {expected}, found {length} elements")
        }
        Kind::MissingField(field) => format!("`{field}` is missing here"),
        Kind::DuplicateField(field) => format!("`{field}` is set twice"),
        Kind::ISizeOutOfRange(value) => format!("{value} is out of range for `{last_key}`"),
        Kind::USizeOutOfRange(value) => format!("{value} is out of range for `{last_key}`"),
        Kind::Unsupported(actual) => format!("a {actual} is not supported here"),
        Kind::UnsupportedKey(actual, expected) => {
            format!("a {actual} key is not supported here; expected {expected}")
        }
        Kind::Message(message) => message.clone(),
    }
}

/// A type serde names (`u32`, `struct CodeSettings`) as people say it.
fn in_words(expected: &str) -> String {
    if expected.starts_with("struct ") || expected == "a map" {
        return "a table of settings".to_string();
    }
    let digits = expected.trim_start_matches(['u', 'i']);
    if expected.len() > 1 && !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        let sign = if expected.starts_with('u') {
            "a whole number, 0 or more"
        } else {
            "a whole number"
        };
        return format!("{sign} ({expected})");
    }
    expected.to_string()
}

/// A TOML syntax error in `text`, as `file:line:column: message`.
fn syntax_error(path: &Path, text: &str) -> Option<String> {
    let error = DeTable::parse(text).err()?;
    let span = error.span()?;
    let (line, column) = position(text, span.start);
    let spanned = text.get(span.clone()).unwrap_or_default();
    let at = if !spanned.is_empty() && spanned.len() <= 40 && !spanned.contains('\n') {
        format!(" `{spanned}`")
    } else {
        String::new()
    };
    Some(format!(
        "{}:{line}:{column}: {}{at}",
        path.display(),
        error.message().trim()
    ))
}

/// The 1-based line and column of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// The line of `key` (a path of table keys and array indexes) in the TOML `text`: the line of
/// its deepest part that the file has.
pub fn line_of(text: &str, key: &[String]) -> Option<usize> {
    let document = DeTable::parse(text).ok()?;
    let mut table = document.get_ref();
    let mut found = None;
    let mut segments = key.iter().peekable();
    while let Some(segment) = segments.next() {
        let Some((name, value)) = table
            .iter()
            .find(|(name, _)| name.get_ref().as_ref() == segment.as_str())
        else {
            break;
        };
        found = Some(name.span().start);
        let mut value = value.get_ref();
        // An array of tables: the next segment is an index.
        if let DeValue::Array(items) = value
            && let Some(index) = segments.peek().and_then(|s| s.parse::<usize>().ok())
        {
            segments.next();
            let item = items.get(index)?;
            found = Some(item.span().start);
            value = item.get_ref();
        }
        match value {
            DeValue::Table(inner) => table = inner,
            _ => break,
        }
    }
    found.map(|offset| position(text, offset).0)
}

/// The expected name nearest `found`, when near enough to be a typo.
fn closest<'a>(found: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|candidate| (distance(found, candidate), *candidate))
        .filter(|(d, candidate)| *d <= 2.max(candidate.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb {
                previous
            } else {
                1 + previous.min(row[j]).min(row[j + 1])
            };
            previous = current;
        }
    }
    row[b.len()]
}

/// `message` (a validation error that starts with the key it is about, such as
/// `codes.length must be between 4 and 10, got 3`; or `N problems:` and one such line per
/// problem) with, for each problem, where its key was set: the file and line when `file` sets
/// it, else the environment variable when `variable_is_set` says one is.
pub fn locate_message(
    file: Option<&Path>,
    message: &str,
    variable_is_set: impl Fn(&str) -> bool,
) -> String {
    let text = file.and_then(|path| std::fs::read_to_string(path).ok());
    let locate = |problem: &str| -> String {
        let first = problem
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .trim_end_matches([',', ';']);
        let key: Vec<String> = first
            .replace('[', ".")
            .replace(']', "")
            .split('.')
            .filter(|part| !part.is_empty())
            .map(String::from)
            .collect();
        if key.is_empty() || key.iter().any(|part| part.contains(['`', '(', ')'])) {
            return problem.to_string();
        }
        let variable = format!("VERIFYD_{}", key.join("__").to_ascii_uppercase());
        if variable_is_set(&variable) {
            return format!("environment variable {variable}: {problem}");
        }
        match (file, text.as_deref().and_then(|text| line_of(text, &key))) {
            (Some(path), Some(line)) => format!("{}:{line}: {problem}", path.display()),
            _ => problem.to_string(),
        }
    };
    match message.split_once(" problems:\n") {
        Some((count, rest)) if count.bytes().all(|b| b.is_ascii_digit()) => {
            let located: Vec<String> = rest.lines().map(|line| locate(line.trim())).collect();
            format!("{count} problems:\n  {}", located.join("\n  "))
        }
        _ => locate(message),
    }
}

/// `VERIFYD_*` variables in `variables` that name no setting (a typo is otherwise silently
/// ignored), each with a guess; `settings` are the top-level keys variables may set.
pub fn unknown_variables<'a>(
    variables: impl Iterator<Item = &'a str>,
    settings: &[&str],
) -> Vec<String> {
    let mut unknown = Vec::new();
    for name in variables {
        let Some(rest) = name.strip_prefix("VERIFYD_") else {
            continue;
        };
        if OTHER_VARIABLES.contains(&rest) || OTHER_PREFIXES.iter().any(|p| rest.starts_with(p)) {
            continue;
        }
        let top = rest.split("__").next().unwrap_or(rest).to_ascii_lowercase();
        if settings.contains(&top.as_str()) {
            continue;
        }
        // `VERIFYD_CODES_LENGTH`: one underscore where levels need two.
        let nested = settings.iter().find_map(|setting| {
            let rest = top.strip_prefix(setting)?.strip_prefix('_')?;
            (!rest.is_empty()).then(|| {
                format!(
                    "; did you mean VERIFYD_{}__{}? (two underscores between levels)",
                    setting.to_ascii_uppercase(),
                    rest.to_ascii_uppercase()
                )
            })
        });
        let guess = nested
            .or_else(|| {
                closest(&top, settings)
                    .map(|g| format!("; did you mean VERIFYD_{}?", g.to_ascii_uppercase()))
            })
            .unwrap_or_default();
        unknown.push(format!(
            "environment variable {name}: not a setting{guess} (settings from the environment: {})",
            settings
                .iter()
                .map(|s| format!("VERIFYD_{}", s.to_ascii_uppercase()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_on_their_lines() {
        let text = "listen = \"x\"\n\n[codes]\nlength = 6\n\n[[carriers]]\nname = \"a\"\n\n[[carriers]]\nname = \"b\"\nkind = \"sim\"\n";
        let key = |path: &[&str]| path.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(line_of(text, &key(&["listen"])), Some(1));
        assert_eq!(line_of(text, &key(&["codes", "length"])), Some(4));
        assert_eq!(line_of(text, &key(&["carriers", "1", "kind"])), Some(11));
        // A key the file lacks: the line of its table.
        assert_eq!(line_of(text, &key(&["codes", "ttl_seconds"])), Some(3));
        assert_eq!(line_of(text, &key(&["nothing"])), None);
    }

    #[test]
    fn each_problem_says_where_its_key_was_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("verifyd.toml");
        std::fs::write(
            &path,
            "[codes]\nlength = 3\n\n[[carriers]]\nname = \"a\"\nkind = \"smq\"\n",
        )
        .unwrap();
        let none = |_: &str| false;
        assert_eq!(
            locate_message(
                Some(&path),
                "codes.length must be between 4 and 10, got 3",
                none
            ),
            format!(
                "{}:2: codes.length must be between 4 and 10, got 3",
                path.display()
            )
        );
        let two = "2 problems:\n  carriers[0].kind: `smq` is not a carrier kind\n  codes.ttl_seconds: too long";
        let from_env = |name: &str| name == "VERIFYD_CODES__TTL_SECONDS";
        assert_eq!(
            locate_message(Some(&path), two, from_env),
            format!(
                "2 problems:\n  {}:6: carriers[0].kind: `smq` is not a carrier kind\n  \
                 environment variable VERIFYD_CODES__TTL_SECONDS: codes.ttl_seconds: too long",
                path.display()
            )
        );
        assert_eq!(
            locate_message(None, "carrier `x` (kind sim): whatever", none),
            "carrier `x` (kind sim): whatever"
        );
    }

    #[test]
    fn typos_get_a_guess() {
        assert_eq!(
            closest("listn", &["listen", "database_url"]),
            Some("listen")
        );
        assert_eq!(
            closest("lenght", &["length", "ttl_seconds"]),
            Some("length")
        );
        assert_eq!(closest("zzzzzz", &["length"]), None);
        let unknown = unknown_variables(
            [
                "VERIFYD_LISTN",
                "VERIFYD_LISTEN",
                "VERIFYD_CODES__LENGTH",
                "VERIFYD_CODES_LENGTH",
                "VERIFYD_API_KEY",
                "VERIFYD_TEST_PYTHON",
                "PATH",
            ]
            .into_iter(),
            &["listen", "codes"],
        );
        assert_eq!(unknown.len(), 2);
        assert!(
            unknown[1].contains("did you mean VERIFYD_CODES__LENGTH? (two underscores"),
            "{unknown:?}"
        );
        assert!(
            unknown[0].starts_with(
                "environment variable VERIFYD_LISTN: not a setting; did you mean VERIFYD_LISTEN?"
            ),
            "{unknown:?}"
        );
    }
}
