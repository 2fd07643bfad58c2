//! Distinguished names as RFC 4514 reads them: a parser (escapes `\,` and `\2C`, hex-string
//! values, multi-valued RDNs, the legacy `;` separator and quoted values, spaces around
//! separators) and a canonical form for matching, so that `CN=Smith\, John, OU=People` and
//! `cn=smith\2c john,ou=people` are the same DN.

use std::fmt::Write as _;

/// One `type=value` of an RDN. The value holds the unescaped bytes (a DN may carry any bytes
/// through hex escapes); `ber` marks a `#hex` value, the BER encoding of the value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ava {
    pub attr: String,
    pub value: Vec<u8>,
    pub ber: bool,
}

/// A parsed DN: its RDNs in the order written (most specific first), each one or more AVAs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dn {
    pub rdns: Vec<Vec<Ava>>,
}

/// Why a string is not a DN, and at which byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnError {
    pub at: usize,
    pub what: &'static str,
}

impl std::fmt::Display for DnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

impl std::error::Error for DnError {}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Short names of the attribute types DNs use most, by OID (so `2.5.4.3=x` is `cn=x`).
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "cn",
        "2.5.4.6" => "c",
        "2.5.4.7" => "l",
        "2.5.4.8" => "st",
        "2.5.4.9" => "street",
        "2.5.4.10" => "o",
        "2.5.4.11" => "ou",
        "0.9.2342.19200300.100.1.1" => "uid",
        "0.9.2342.19200300.100.1.25" => "dc",
        _ => return None,
    })
}

struct Parser<'s> {
    s: &'s [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn err<T>(&self, what: &'static str) -> Result<T, DnError> {
        Err(DnError { at: self.pos, what })
    }

    /// `descr` (letter, then letters, digits, hyphens) or a numeric OID, optionally written with
    /// the legacy `OID.` prefix; lower-cased.
    fn attr_type(&mut self) -> Result<String, DnError> {
        self.skip_spaces();
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
                self.pos += 1;
            } else {
                break;
            }
        }
        let raw = &self.s[start..self.pos];
        if raw.is_empty() {
            return self.err("attribute type expected");
        }
        let mut t = String::from_utf8_lossy(raw).to_ascii_lowercase();
        if let Some(rest) = t.strip_prefix("oid.") {
            t = rest.to_string();
        }
        let numeric = t.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        let valid = if numeric {
            !t.is_empty()
                && t.split('.').all(|p| !p.is_empty())
                && t.bytes().next().is_some_and(|b| b.is_ascii_digit())
        } else {
            t.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()) && !t.contains('.')
        };
        if !valid {
            return Err(DnError {
                at: start,
                what: "invalid attribute type",
            });
        }
        if numeric && let Some(short) = short_name(&t) {
            t = short.to_string();
        }
        self.skip_spaces();
        if self.peek() != Some(b'=') {
            return self.err("`=` expected");
        }
        self.pos += 1;
        Ok(t)
    }

    fn at_separator(&self) -> bool {
        matches!(self.peek(), None | Some(b',' | b';' | b'+'))
    }

    /// The value after `=`: `#hex`, a quoted string (RFC 2253) or an escaped string.
    fn value(&mut self) -> Result<(Vec<u8>, bool), DnError> {
        self.skip_spaces();
        match self.peek() {
            Some(b'#') => {
                self.pos += 1;
                let mut out = Vec::new();
                while let Some(h) = self.peek().and_then(hex_val) {
                    let Some(l) = self.s.get(self.pos + 1).copied().and_then(hex_val) else {
                        return self.err("odd number of hex digits");
                    };
                    out.push(h << 4 | l);
                    self.pos += 2;
                }
                if out.is_empty() {
                    return self.err("hex digits expected after `#`");
                }
                self.skip_spaces();
                if !self.at_separator() {
                    return self.err("separator expected after a hex value");
                }
                Ok((out, true))
            }
            Some(b'"') => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    match self.peek() {
                        None => return self.err("unterminated quoted value"),
                        Some(b'"') => {
                            self.pos += 1;
                            break;
                        }
                        Some(b'\\') => out.push(self.escape()?),
                        Some(b) => {
                            out.push(b);
                            self.pos += 1;
                        }
                    }
                }
                self.skip_spaces();
                if !self.at_separator() {
                    return self.err("separator expected after a quoted value");
                }
                Ok((out, false))
            }
            _ => {
                let mut out = Vec::new();
                // length of `out` up to its last significant byte (unescaped trailing spaces
                // are not part of the value)
                let mut keep = 0;
                while !self.at_separator() {
                    if self.peek() == Some(b'\\') {
                        out.push(self.escape()?);
                        keep = out.len();
                    } else {
                        let b = self.s[self.pos];
                        out.push(b);
                        self.pos += 1;
                        if b != b' ' {
                            keep = out.len();
                        }
                    }
                }
                out.truncate(keep);
                Ok((out, false))
            }
        }
    }

    /// `\` followed by two hex digits (one byte) or by one character (that character).
    fn escape(&mut self) -> Result<u8, DnError> {
        self.pos += 1;
        let Some(c) = self.peek() else {
            return self.err("`\\` at the end");
        };
        if let (Some(h), Some(l)) = (
            hex_val(c),
            self.s.get(self.pos + 1).copied().and_then(hex_val),
        ) {
            self.pos += 2;
            return Ok(h << 4 | l);
        }
        if !c.is_ascii() {
            // `\é`: the character itself, all of its bytes
            return self.err("`\\` before a non-ASCII character");
        }
        self.pos += 1;
        Ok(c)
    }
}

/// Parses a DN string. Spaces around separators are allowed; an empty string is the empty DN.
pub fn parse(s: &str) -> Result<Dn, DnError> {
    let mut p = Parser {
        s: s.as_bytes(),
        pos: 0,
    };
    let mut dn = Dn::default();
    p.skip_spaces();
    if p.peek().is_none() {
        return Ok(dn);
    }
    loop {
        let mut rdn = Vec::new();
        loop {
            let attr = p.attr_type()?;
            let (value, ber) = p.value()?;
            rdn.push(Ava { attr, value, ber });
            if p.peek() == Some(b'+') {
                p.pos += 1;
                continue;
            }
            break;
        }
        dn.rdns.push(rdn);
        match p.peek() {
            None => return Ok(dn),
            Some(b',' | b';') => p.pos += 1,
            Some(_) => return p.err("separator expected"),
        }
    }
}

/// The content of a BER-encoded string value (`#04024869` is "Hi"), when it is one primitive
/// universal string with a definite length.
fn ber_string(b: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = b.split_first()?;
    // OCTET STRING, UTF8String, NumericString, PrintableString, T61String, IA5String,
    // VisibleString
    if !matches!(tag, 4 | 12 | 18 | 19 | 20 | 22 | 26) {
        return None;
    }
    let (&len, rest) = rest.split_first()?;
    let (len, rest) = if len < 0x80 {
        (len as usize, rest)
    } else {
        let n = (len & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        (bytes.iter().fold(0usize, |a, &b| a << 8 | b as usize), rest)
    };
    (rest.len() == len).then_some(rest)
}

/// Appends a value in canonical escaped form: RFC 4514's special characters with a backslash,
/// control characters and bytes that are not UTF-8 as lower-case hex pairs.
pub fn escape_value(value: &[u8], out: &mut String) {
    let chunks: Vec<_> = value.utf8_chunks().collect();
    let mut first = true;
    for (ci, chunk) in chunks.iter().enumerate() {
        let last_chunk = ci + 1 == chunks.len() && chunk.invalid().is_empty();
        let mut chars = chunk.valid().chars().peekable();
        while let Some(c) = chars.next() {
            let last = last_chunk && chars.peek().is_none();
            match c {
                '\\' | ',' | '+' | '"' | '<' | '>' | ';' | '=' => {
                    out.push('\\');
                    out.push(c);
                }
                '#' if first => out.push_str("\\#"),
                ' ' if first || last => out.push_str("\\ "),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\{b:02x}");
                    }
                }
                c => out.push(c),
            }
            first = false;
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\{b:02x}");
            first = false;
        }
    }
}

/// A value as matching sees it: a string value lower-cased with its white space collapsed
/// (caseIgnoreMatch, the rule of cn, ou, o, dc, uid); bytes that are not UTF-8 as they are.
fn canonical_value(ava: &Ava) -> (Vec<u8>, bool) {
    let (bytes, ber) = if ava.ber {
        match ber_string(&ava.value) {
            Some(s) => (s, false),
            None => (ava.value.as_slice(), true),
        }
    } else {
        (ava.value.as_slice(), false)
    };
    if ber {
        return (bytes.to_vec(), true);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            let lower = s.to_lowercase();
            let collapsed: Vec<&str> = lower.split_whitespace().collect();
            (collapsed.join(" ").into_bytes(), false)
        }
        Err(_) => (bytes.to_ascii_lowercase(), false),
    }
}

impl Dn {
    /// The canonical string: lower-case types, values compared as above, the AVAs of a
    /// multi-valued RDN sorted, canonical escapes, no spaces around separators.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        for (i, rdn) in self.rdns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let mut avas: Vec<(&str, Vec<u8>, bool)> = rdn
                .iter()
                .map(|a| {
                    let (v, ber) = canonical_value(a);
                    (a.attr.as_str(), v, ber)
                })
                .collect();
            avas.sort();
            avas.dedup();
            for (j, (attr, value, ber)) in avas.iter().enumerate() {
                if j > 0 {
                    out.push('+');
                }
                out.push_str(attr);
                out.push('=');
                if *ber {
                    out.push('#');
                    out.push_str(&hex::encode(value));
                } else {
                    escape_value(value, &mut out);
                }
            }
        }
        out
    }
}

/// The canonical form of a DN for matching (see [`Dn::canonical`]). A string that is not a DN
/// is kept as it is (it then matches only itself).
pub fn normalize_dn(dn: &str) -> String {
    let mut out = String::new();
    normalize_dn_into(dn, &mut out);
    out
}

/// [`normalize_dn`] into `out` (cleared first), whose memory is reused: a directory's member
/// values are hundreds of thousands of DNs, most only looked up.
pub fn normalize_dn_into(dn: &str, out: &mut String) {
    if plain_canonical_into(dn, out) {
        return;
    }
    out.clear();
    match parse(dn) {
        Ok(d) => out.push_str(&d.canonical()),
        Err(_) => out.push_str(dn),
    }
}

/// The canonical form of the DNs almost every directory sends (`cn=Jane Doe,ou=People,…`:
/// printable ASCII, one `type=value` per RDN, nothing to unescape), made in one pass without
/// the parser; `None` for anything else (the parser's form then applies). Equal to
/// [`Dn::canonical`] wherever it answers (a property test checks it).
#[cfg(test)]
fn plain_canonical(dn: &str) -> Option<String> {
    let mut out = String::new();
    plain_canonical_into(dn, &mut out).then_some(out)
}

/// `plain_canonical` into `out`: whether it answered (`out` then holds the form; otherwise
/// its content is unspecified).
fn plain_canonical_into(dn: &str, out: &mut String) -> bool {
    let plain = |c: &u8| {
        (0x20..=0x7e).contains(c) && !matches!(c, b'\\' | b'"' | b'+' | b';' | b'#' | b'<' | b'>')
    };
    let dn = dn.as_bytes();
    if dn.is_empty() || !dn.iter().all(plain) {
        return false;
    }
    let mut buf = std::mem::take(out).into_bytes();
    buf.clear();
    let answered = plain_rdns(dn, &mut buf).is_some();
    // printable ASCII throughout, so always UTF-8
    match String::from_utf8(buf) {
        Ok(s) => {
            *out = s;
            answered
        }
        Err(_) => false,
    }
}

/// The RDNs of a DN of printable ASCII, lower-cased, the spaces around a type and a value
/// dropped and those inside a value collapsed to one; `None` where the parser must decide.
fn plain_rdns(dn: &[u8], out: &mut Vec<u8>) -> Option<()> {
    for (i, rdn) in dn.split(|&c| c == b',').enumerate() {
        let eq = rdn.iter().position(|&c| c == b'=')?;
        let (attr, value) = (rdn[..eq].trim_ascii(), &rdn[eq + 1..]);
        if value.contains(&b'=')
            || !attr.first()?.is_ascii_alphabetic()
            || !attr.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        {
            return None;
        }
        if i > 0 {
            out.push(b',');
        }
        out.extend(attr.iter().map(u8::to_ascii_lowercase));
        out.push(b'=');
        let (mut word, mut gap) = (false, false);
        for &c in value {
            if c == b' ' {
                gap = word;
            } else {
                if gap {
                    out.push(b' ');
                    gap = false;
                }
                out.push(c.to_ascii_lowercase());
                word = true;
            }
        }
        if !word {
            return None;
        }
    }
    Some(())
}

#[cfg(test)]
/// Whether two DNs are the same by RFC 4514 (both parse and their canonical forms match).
pub fn same_dn(a: &str, b: &str) -> bool {
    match (parse(a), parse(b)) {
        (Ok(a), Ok(b)) => a.canonical() == b.canonical(),
        _ => false,
    }
}

/// A DN for display from raw bytes that may not be UTF-8: the UTF-8 parts as they are, every
/// other byte as a `\xx` escape (what RFC 4514 allows in a value).
pub fn display_bytes(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// The one-pass form agrees with the parser wherever it answers, and answers for the
        /// plain DNs directories send.
        #[test]
        fn the_plain_fast_path_agrees_with_the_parser(
            rdns in prop::collection::vec(
                (" {0,2}", "[A-Za-z][A-Za-z0-9-]{0,4}|[0-9.]{1,5}|oid\\.[0-9]{1,3}",
                 " {0,2}", "[ -~]{0,8}"),
                1..5,
            ),
            noise in "[ -~]{0,24}",
        ) {
            let dn: Vec<String> = rdns
                .iter()
                .map(|(a, t, b, v)| format!("{a}{t}{b}={v}"))
                .collect();
            for s in [dn.join(","), noise] {
                if let Some(fast) = plain_canonical(&s) {
                    let slow = parse(&s).map(|d| d.canonical());
                    prop_assert_eq!(Ok(fast), slow, "{:?}", s);
                }
            }
        }
    }

    #[test]
    fn plain_dns_take_the_fast_path_and_escaped_ones_the_parser() {
        assert_eq!(
            plain_canonical("CN=Jane  Doe , OU=People,dc=Example,dc=com").as_deref(),
            Some("cn=jane doe,ou=people,dc=example,dc=com")
        );
        for s in [
            r"cn=Smith\, John,ou=x",
            "cn=a+sn=b,o=x",
            "cn=a=b",
            "cn=,o=x",
            "",
            "2.5.4.3=x",
        ] {
            assert_eq!(plain_canonical(s), None, "{s}");
        }
    }

    #[test]
    fn rfc_4514_variants_match() {
        let a = r"CN=Smith\, John, OU=People,dc=Example";
        let b = r"cn=smith\2c john,ou=people,dc=example";
        assert_eq!(normalize_dn(a), normalize_dn(b));
        assert!(same_dn(a, b));
        assert_eq!(normalize_dn(a), r"cn=smith\, john,ou=people,dc=example");
        assert!(same_dn("cn=a+uid=b,dc=x", "UID=B + CN=A ; DC=X"));
        assert!(same_dn(
            "2.5.4.3=Joe,dc=x",
            "cn=joe,OID.0.9.2342.19200300.100.1.25=x"
        ));
        assert!(same_dn("cn=#04024869,dc=x", "cn=hi,dc=x"));
        assert!(same_dn(r#"cn="Doe, John",dc=x"#, r"cn=Doe\, John,dc=x"));
        assert!(same_dn(r"cn=J\C3\BCrgen,dc=x", "cn=jürgen,dc=x"));
        assert!(same_dn("cn=a  b , dc=x", r"cn=a b,dc=x"));
        assert!(!same_dn("cn=a,dc=x", "cn=b,dc=x"));
        assert!(!same_dn("cn=a,dc=x", "cn=a,dc=x,dc=y"));
        assert!(!same_dn(r"cn=a\,b,dc=x", "cn=a,b,dc=x"));
    }

    #[test]
    fn old_normalizer_cases_still_hold() {
        assert_eq!(
            normalize_dn("CN=Shiela Harada, OU=Peons , dc=Bitwarden,DC=com"),
            "cn=shiela harada,ou=peons,dc=bitwarden,dc=com"
        );
        assert_eq!(normalize_dn(r"cn=Doe\, John,dc=x"), r"cn=doe\, john,dc=x");
        assert_eq!(normalize_dn(""), "");
    }

    #[test]
    fn escaped_spaces_and_non_utf8_bytes() {
        // an escaped trailing space is significant in the string, but insignificant to
        // caseIgnoreMatch
        assert!(same_dn(r"cn=a\ ,dc=x", "cn=a,dc=x"));
        let d = parse(r"cn=bad\ff\fe,dc=x").unwrap();
        assert_eq!(d.rdns[0][0].value, vec![b'b', b'a', b'd', 0xff, 0xfe]);
        assert_eq!(d.canonical(), r"cn=bad\ff\fe,dc=x");
        assert_eq!(normalize_dn(r"cn=\23x\20"), r"cn=\#x");
        assert_eq!(normalize_dn("cn=a\u{1}b"), r"cn=a\01b");
    }

    #[test]
    fn malformed_dns_are_errors_not_panics() {
        for bad in [
            "cn",
            "=x",
            "cn=a,",
            ",cn=a",
            "cn=a,,dc=x",
            r"cn=a\",
            r"cn=a\é",
            "cn=#",
            "cn=#4",
            "cn=#zz",
            "c n=a",
            "1.=x",
            "cn=\"abc",
            "cn=\"a\"b",
            "9cn=x",
            "cn.x=y",
        ] {
            assert!(parse(bad).is_err(), "{bad} parsed");
            assert_eq!(normalize_dn(bad), bad, "{bad} is kept as it is");
        }
    }

    #[test]
    fn bytes_are_displayed_with_escapes() {
        assert_eq!(display_bytes(b"cn=a\xffb,dc=x"), r"cn=a\ffb,dc=x");
        assert_eq!(display_bytes("cn=é".as_bytes()), "cn=é");
    }
}
