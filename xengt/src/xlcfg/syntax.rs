//! The xl.cfg syntax (libxlu's grammar): `key = value` or `key += value` settings
//! separated by newlines or `;`, `#` comments, values that are strings (`"…"` or `'…'`,
//! backslash escapes), numbers (decimal, `0x` hex, optional `-`) or `[ … ]` lists (may span
//! lines, trailing comma allowed). No panics on any input; positions are 1-based lines.

use std::collections::BTreeMap;

/// A parsed value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Quoted string (escapes resolved).
    Str(String),
    /// Number as written (text kept; converted on use).
    Num(String),
    /// List of values.
    List(Vec<Value>),
}

/// A setting and where it was (last) assigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// Value after all `=`/`+=`.
    pub value: Value,
    /// Line of the last assignment.
    pub line: usize,
}

/// A syntax error at a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// What went wrong.
    pub msg: String,
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
    line: usize,
}

const MAX_DEPTH: usize = 16;

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn err<T>(&self, msg: impl Into<String>) -> Result<T, SyntaxError> {
        Err(SyntaxError {
            line: self.line,
            msg: msg.into(),
        })
    }

    /// Skips blanks and comments; newlines too if `newlines`.
    fn skip(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' => {
                    self.bump();
                }
                b'\n' if newlines => {
                    self.bump();
                }
                b'#' => {
                    while !matches!(self.peek(), None | Some(b'\n')) {
                        self.bump();
                    }
                }
                _ => break,
            }
        }
    }

    fn ident(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
            self.bump();
        }
        let id = self.s.get(start..self.pos).unwrap_or_default();
        match id.first() {
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                Ok(String::from_utf8_lossy(id).into_owned())
            }
            _ => self.err("expected a setting name ([A-Za-z_][A-Za-z0-9_]*)"),
        }
    }

    fn string(&mut self, quote: u8) -> Result<Value, SyntaxError> {
        let start_line = self.line;
        self.bump();
        let mut out = Vec::new();
        loop {
            match self.bump() {
                None | Some(b'\n') => {
                    return Err(SyntaxError {
                        line: start_line,
                        msg: "unterminated string".into(),
                    })
                }
                Some(c) if c == quote => break,
                Some(b'\\') => out.push(self.escape()?),
                Some(c) => out.push(c),
            }
        }
        match String::from_utf8(out) {
            Ok(s) => Ok(Value::Str(s)),
            Err(_) => self.err("string is not valid UTF-8"),
        }
    }

    fn escape(&mut self) -> Result<u8, SyntaxError> {
        let Some(c) = self.bump() else {
            return self.err("backslash at end of input");
        };
        Ok(match c {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'\\' | b'"' | b'\'' => c,
            b'x' => {
                let hex: Vec<u8> = (0..2).filter_map(|_| self.bump()).collect();
                let txt = String::from_utf8_lossy(&hex).into_owned();
                match u8::from_str_radix(&txt, 16) {
                    Ok(v) if hex.len() == 2 => v,
                    _ => return self.err(format!("bad \\x escape {txt:?}")),
                }
            }
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ b'0'..=b'7') => {
                            self.bump();
                            v = v * 8 + u32::from(d - b'0');
                        }
                        _ => break,
                    }
                }
                u8::try_from(v).or_else(|_| self.err("octal escape above \\377"))?
            }
            other => {
                return self.err(format!(
                    "unknown escape \\{} (write the character literally)",
                    char::from(other)
                ))
            }
        })
    }

    fn number(&mut self) -> Value {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.bump();
        }
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'.') {
            self.bump();
        }
        Value::Num(
            String::from_utf8_lossy(self.s.get(start..self.pos).unwrap_or_default()).into_owned(),
        )
    }

    fn value(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => self.string(q),
            Some(b'[') => self.list(depth),
            Some(c) if c.is_ascii_digit() || c == b'-' => Ok(self.number()),
            Some(c) => self.err(format!(
                "expected a value (string, number or list), found {:?}",
                char::from(c)
            )),
            None => self.err("expected a value, found end of file"),
        }
    }

    fn list(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        if depth >= MAX_DEPTH {
            return self.err("lists nested too deeply");
        }
        self.bump();
        let mut items = Vec::new();
        loop {
            self.skip(true);
            if self.peek() == Some(b']') {
                self.bump();
                return Ok(Value::List(items));
            }
            items.push(self.value(depth + 1)?);
            self.skip(true);
            match self.peek() {
                Some(b',') => {
                    self.bump();
                }
                Some(b']') => {}
                _ => return self.err("expected ',' or ']' in list"),
            }
        }
    }
}

/// Parses a whole file into settings (later `=` replaces, `+=` appends).
pub fn parse(text: &str) -> Result<BTreeMap<String, Setting>, SyntaxError> {
    let mut lx = Lexer {
        s: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    let mut out: BTreeMap<String, Setting> = BTreeMap::new();
    loop {
        lx.skip(true);
        while lx.peek() == Some(b';') {
            lx.bump();
            lx.skip(true);
        }
        if lx.peek().is_none() {
            return Ok(out);
        }
        let line = lx.line;
        let key = lx.ident()?;
        lx.skip(false);
        let append = match (lx.peek(), lx.s.get(lx.pos + 1).copied()) {
            (Some(b'+'), Some(b'=')) => {
                lx.bump();
                lx.bump();
                true
            }
            (Some(b'='), _) => {
                lx.bump();
                false
            }
            _ => return lx.err(format!("expected '=' or '+=' after {key}")),
        };
        lx.skip(false);
        let value = lx.value(0)?;
        lx.skip(false);
        match lx.peek() {
            None | Some(b'\n') | Some(b';') => {}
            Some(c) => {
                return lx.err(format!(
                    "unexpected {:?} after the value of {key} (one setting per line or ';')",
                    char::from(c)
                ))
            }
        }
        let merged = match (append, out.remove(&key)) {
            (true, Some(prev)) => match (prev.value, value) {
                (Value::List(mut a), Value::List(b)) => {
                    a.extend(b);
                    Value::List(a)
                }
                (Value::Str(a), Value::Str(b)) => Value::Str(a + &b),
                _ => {
                    return Err(SyntaxError {
                        line,
                        msg: format!("'+=' on {key} needs both sides lists or both strings"),
                    })
                }
            },
            (_, _) => value,
        };
        out.insert(
            key,
            Setting {
                value: merged,
                line,
            },
        );
    }
}

/// Parses a number as libxlu's `strtol(…, 0)` would, but strictly: decimal, `0x` hex,
/// optional leading `-`; the whole text must be consumed.
pub fn parse_int(text: &str) -> Option<i64> {
    let t = text.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let v = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        if hex.is_empty() || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        i64::from_str_radix(hex, 16).ok()?
    } else {
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        digits.parse::<i64>().ok()?
    };
    if neg {
        v.checked_neg()
    } else {
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(m: &BTreeMap<String, Setting>, k: &str) -> Value {
        m.get(k).unwrap().value.clone()
    }

    #[test]
    fn settings_quotes_numbers_lists_comments() {
        let src = "name = \"g1\"  # comment\ntype='hvm'; memory = 0x400\n\
                   disk = [ 'a',\n  \"b\", # c\n ]\nvgt=1\nneg = -1\nesc = \"a\\tb\\x41\\101\"\n";
        let m = parse(src).unwrap();
        assert_eq!(get(&m, "name"), Value::Str("g1".into()));
        assert_eq!(get(&m, "type"), Value::Str("hvm".into()));
        assert_eq!(get(&m, "memory"), Value::Num("0x400".into()));
        assert_eq!(
            get(&m, "disk"),
            Value::List(vec![Value::Str("a".into()), Value::Str("b".into())])
        );
        assert_eq!(get(&m, "esc"), Value::Str("a\tbAA".into()));
        assert_eq!(m.get("vgt").unwrap().line, 6);
        assert_eq!(parse_int("0x400"), Some(1024));
        assert_eq!(parse_int("-1"), Some(-1));
        assert_eq!(parse_int("1x"), None);
        assert_eq!(parse_int("0x"), None);
    }

    #[test]
    fn plus_equals_appends() {
        let m = parse("l = ['a']\nl += ['b']\ns = 'x'\ns += 'y'\nn += ['z']\n").unwrap();
        assert_eq!(
            get(&m, "l"),
            Value::List(vec![Value::Str("a".into()), Value::Str("b".into())])
        );
        assert_eq!(get(&m, "s"), Value::Str("xy".into()));
        assert_eq!(get(&m, "n"), Value::List(vec![Value::Str("z".into())]));
        let e = parse("a = 1\na += 'x'").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn errors_have_lines() {
        for (src, line) in [
            ("a = 1\nb = \"unterminated\n", 2),
            ("a = 1\n\n= 3", 3),
            ("x = 'a\\$'", 1),
            ("x = [1, 2", 1),
            ("x = 1 2", 1),
            ("x 1", 1),
        ] {
            let e = parse(src).unwrap_err();
            assert_eq!(e.line, line, "{src:?}: {e:?}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let src = format!("x = {}", "[".repeat(10_000));
        assert!(parse(&src).is_err());
    }
}
