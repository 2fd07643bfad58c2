//! Properties of the DN parser and normalizer and of building entries from raw BER: parsing
//! never panics, normalizing is idempotent, RFC 4514 variants of one DN normalize equal and
//! different DNs differently, escaping round-trips, and any bytes in an entry give an entry or
//! a reason, never a panic. Each property is also run against a deliberately broken
//! implementation (the old normalizer, ldap3's `SearchEntry::construct`...) to show it can fail.

use directory_connector::sources::ldap::dn::{self, escape_value, normalize_dn, parse};
use directory_connector::sources::ldap::entry::Entry;
use ldap3::asn1::{PL, StructureTag, TagClass};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

// ---------- generators ----------

/// Characters DN values are made of, the troublesome ones often.
fn value_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::char::range('a', 'z'),
        2 => prop::char::range('A', 'Z'),
        1 => prop::char::range('0', '9'),
        3 => Just(' '),
        3 => prop::sample::select(vec![',', '+', '"', '\\', '<', '>', ';', '=', '#']),
        1 => prop::sample::select(vec!['é', 'Ü', 'ß', '中', '\u{1}', '\t', '\u{7f}']),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop::collection::vec(value_char(), 0..8).prop_map(|v| v.into_iter().collect())
}

fn attr() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["cn", "ou", "dc", "uid", "o", "mail", "x-attr"])
}

/// A DN as a model: RDNs of (type, value).
type Model = Vec<Vec<(&'static str, String)>>;

fn model() -> impl Strategy<Value = Model> {
    prop::collection::vec(prop::collection::vec((attr(), value()), 1..3), 0..5)
}

/// How one rendering writes a DN: a stream of choices consumed as it goes.
#[derive(Debug, Clone)]
struct Style(Vec<u8>, usize);

impl Style {
    fn pick(&mut self, n: u8) -> u8 {
        let v = self
            .0
            .get(self.1 % self.0.len().max(1))
            .copied()
            .unwrap_or(0);
        self.1 += 1;
        v % n
    }
}

fn style() -> impl Strategy<Value = Style> {
    prop::collection::vec(any::<u8>(), 1..64).prop_map(|v| Style(v, 0))
}

fn oid_of(attr: &str) -> Option<&'static str> {
    match attr {
        "cn" => Some("2.5.4.3"),
        "ou" => Some("2.5.4.11"),
        "dc" => Some("0.9.2342.19200300.100.1.25"),
        _ => None,
    }
}

fn hex_escape(c: char, upper: bool, out: &mut String) {
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        if upper {
            out.push_str(&format!("\\{b:02X}"));
        } else {
            out.push_str(&format!("\\{b:02x}"));
        }
    }
}

/// Writes a model as a DN string, escaping, casing and spacing as the style says.
fn render(m: &Model, st: &mut Style) -> String {
    let mut out = String::new();
    for (i, rdn) in m.iter().enumerate() {
        if i > 0 {
            out.push_str(if st.pick(4) == 0 { ";" } else { "," });
            if st.pick(2) == 0 {
                out.push(' ');
            }
        }
        let mut avas: Vec<&(&str, String)> = rdn.iter().collect();
        if st.pick(2) == 0 {
            avas.reverse();
        }
        for (j, (a, v)) in avas.iter().enumerate() {
            if j > 0 {
                out.push_str(if st.pick(2) == 0 { "+" } else { " + " });
            }
            match (st.pick(4), oid_of(a)) {
                (0, Some(oid)) => out.push_str(oid),
                (1, _) => out.push_str(&a.to_uppercase()),
                _ => out.push_str(a),
            }
            out.push_str(if st.pick(3) == 0 { " = " } else { "=" });
            let n = v.chars().count();
            for (k, c) in v.chars().enumerate() {
                let must = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
                    || (k == 0 && matches!(c, ' ' | '#'))
                    || (k + 1 == n && c == ' ');
                let choice = st.pick(4);
                if must {
                    if choice < 2 {
                        out.push('\\');
                        out.push(c);
                    } else {
                        hex_escape(c, choice == 2, &mut out);
                    }
                } else if choice == 0 {
                    hex_escape(c, st.pick(2) == 0, &mut out);
                } else if choice == 1 && c.is_ascii_alphabetic() {
                    out.push(if c.is_ascii_lowercase() {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    });
                } else {
                    out.push(c);
                }
            }
        }
    }
    out
}

/// What matching compares: types, values lower-cased with white space collapsed, AVAs sorted.
fn meaning(m: &Model) -> Vec<Vec<(&'static str, String)>> {
    m.iter()
        .map(|rdn| {
            let mut r: Vec<(&'static str, String)> = rdn
                .iter()
                .map(|(a, v)| {
                    let v = v.to_lowercase();
                    (*a, v.split_whitespace().collect::<Vec<_>>().join(" "))
                })
                .collect();
            r.sort();
            r.dedup();
            r
        })
        .collect()
}

// ---------- properties, parameterized by the implementation under test ----------

type Normalizer = fn(&str) -> String;

fn idempotent(norm: Normalizer, s: &str) -> Result<(), TestCaseError> {
    let once = norm(s);
    prop_assert_eq!(norm(&once), once.clone(), "input {:?}", s);
    Ok(())
}

fn variants_equal(
    norm: Normalizer,
    m: &Model,
    a: &mut Style,
    b: &mut Style,
) -> Result<(), TestCaseError> {
    let (x, y) = (render(m, a), render(m, b));
    prop_assert_eq!(norm(&x), norm(&y), "{:?} vs {:?}", x, y);
    Ok(())
}

fn different_differ(
    norm: Normalizer,
    m: &Model,
    n: &Model,
    st: &mut Style,
) -> Result<(), TestCaseError> {
    let (x, y) = (render(m, st), render(n, st));
    let same = meaning(m) == meaning(n);
    prop_assert_eq!(norm(&x) == norm(&y), same, "{:?} vs {:?}", x, y);
    Ok(())
}

/// The same DN but one value one character longer.
fn near_miss(m: &Model) -> Model {
    let mut near = m.clone();
    if let Some(ava) = near.last_mut().and_then(|r| r.first_mut()) {
        ava.1.push('q');
    }
    near
}

type Escaper = fn(&[u8]) -> String;

fn escape(v: &[u8]) -> String {
    let mut s = String::new();
    escape_value(v, &mut s);
    s
}

fn round_trips(esc: Escaper, v: &[u8]) -> Result<(), TestCaseError> {
    let s = format!("cn={},dc=x", esc(v));
    let d = parse(&s).map_err(|e| TestCaseError::fail(format!("{s:?}: {e}")))?;
    prop_assert_eq!(d.rdns.len(), 2, "{:?}", s);
    prop_assert_eq!(&d.rdns[0][0].value, &v.to_vec(), "{:?}", s);
    Ok(())
}

type Builder = fn(StructureTag) -> Result<Vec<u8>, String>;

fn build(tag: StructureTag) -> Result<Vec<u8>, String> {
    Entry::from_raw(tag)
        .map(|e| e.dn.into_bytes())
        .map_err(|u| u.reason)
}

fn prim(b: &[u8]) -> StructureTag {
    StructureTag {
        class: TagClass::Universal,
        id: 4,
        payload: PL::P(b.to_vec()),
    }
}

fn cons(class: TagClass, id: u64, v: Vec<StructureTag>) -> StructureTag {
    StructureTag {
        class,
        id,
        payload: PL::C(v),
    }
}

type RawAttrs = Vec<(Vec<u8>, Vec<Vec<u8>>)>;

fn raw_entry(dn: &[u8], attrs: &RawAttrs) -> StructureTag {
    let list = attrs
        .iter()
        .map(|(n, vals)| {
            cons(
                TagClass::Universal,
                16,
                vec![
                    prim(n),
                    cons(
                        TagClass::Universal,
                        17,
                        vals.iter().map(|v| prim(v)).collect(),
                    ),
                ],
            )
        })
        .collect();
    cons(
        TagClass::Application,
        4,
        vec![prim(dn), cons(TagClass::Universal, 16, list)],
    )
}

fn entry_or_reason(b: Builder, dn: &[u8], attrs: &RawAttrs) -> Result<(), TestCaseError> {
    let utf8 = std::str::from_utf8(dn).is_ok()
        && attrs.iter().all(|(n, _)| std::str::from_utf8(n).is_ok());
    let r = std::panic::catch_unwind(|| b(raw_entry(dn, attrs)))
        .map_err(|_| TestCaseError::fail("panicked"))?;
    match r {
        Ok(d) => {
            prop_assert!(utf8);
            prop_assert_eq!(d, dn.to_vec());
        }
        Err(reason) => {
            prop_assert!(!utf8, "readable entry refused: {}", reason);
            prop_assert!(!reason.is_empty());
        }
    }
    Ok(())
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => any::<u8>(),
            2 => prop::sample::select(b" ,+\"\\<>;=#".to_vec()),
            2 => prop::char::range('a', 'z').prop_map(|c| c as u8),
        ],
        0..12,
    )
}

fn raw_attrs() -> impl Strategy<Value = RawAttrs> {
    prop::collection::vec((bytes(), prop::collection::vec(bytes(), 0..3)), 0..4)
}

fn tag_tree() -> impl Strategy<Value = StructureTag> {
    let class = prop::sample::select(vec![
        TagClass::Universal,
        TagClass::Application,
        TagClass::Context,
        TagClass::Private,
    ]);
    let leaf = (class.clone(), 0u64..20, bytes()).prop_map(|(class, id, b)| StructureTag {
        class,
        id,
        payload: PL::P(b),
    });
    leaf.prop_recursive(4, 32, 4, move |inner| {
        (
            class.clone(),
            prop_oneof![Just(4u64), 0u64..20],
            prop::collection::vec(inner, 0..4),
        )
            .prop_map(|(class, id, v)| StructureTag {
                class,
                id,
                payload: PL::C(v),
            })
    })
}

// ---------- the properties ----------

proptest! {
    #![proptest_config(Config { cases: 512, ..Config::default() })]

    #[test]
    fn parse_never_panics(s in any::<String>(), t in prop::collection::vec(value_char(), 0..40)) {
        let _ = parse(&s);
        let _ = normalize_dn(&s);
        let t: String = t.into_iter().collect();
        let _ = parse(&t);
        let _ = normalize_dn(&format!("cn={t}"));
    }

    #[test]
    fn normalize_is_idempotent(s in any::<String>(), m in model(), mut st in style()) {
        idempotent(normalize_dn, &s)?;
        idempotent(normalize_dn, &render(&m, &mut st))?;
    }

    #[test]
    fn rfc_4514_variants_normalize_equal(m in model(), mut a in style(), mut b in style()) {
        variants_equal(normalize_dn, &m, &mut a, &mut b)?;
    }

    #[test]
    fn different_dns_normalize_differently(m in model(), n in model(), mut st in style()) {
        different_differ(normalize_dn, &m, &n, &mut st)?;
        different_differ(normalize_dn, &m, &near_miss(&m), &mut st)?;
    }

    #[test]
    fn escaping_round_trips(v in bytes()) {
        round_trips(escape, &v)?;
    }

    #[test]
    fn any_entry_bytes_give_an_entry_or_a_reason(dn in bytes(), attrs in raw_attrs()) {
        entry_or_reason(build, &dn, &attrs)?;
    }

    #[test]
    fn any_structure_gives_an_entry_or_a_reason(t in tag_tree()) {
        let _ = Entry::from_raw(t);
    }
}

// ---------- each property can fail: broken implementations are caught ----------

fn fails<S: Strategy>(s: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) -> bool {
    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    runner.run(&s, test).is_err()
}

/// The normalizer before issue 11: lower case, no spaces around separators, escapes kept as
/// written.
fn old_normalizer(dn: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    let mut at_start = true;
    let mut pending = 0usize;
    for c in dn.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' || c == ';' || c == '=' {
            out.truncate(out.len() - pending);
            pending = 0;
            out.push(if c == '=' { '=' } else { ',' });
            at_start = true;
            continue;
        } else if c == ' ' {
            if !at_start {
                out.push(' ');
                pending += 1;
            }
            continue;
        }
        at_start = false;
        pending = 0;
        out.extend(c.to_lowercase());
    }
    out.truncate(out.len() - pending);
    out
}

#[test]
fn broken_normalizers_are_caught() {
    // variants: the old normalizer (`\,` is not `\2C`) and plain lower-casing
    for broken in [old_normalizer as Normalizer, |s: &str| s.to_lowercase()] {
        assert!(fails((model(), style(), style()), |(m, mut a, mut b)| {
            variants_equal(broken, &m, &mut a, &mut b)
        }));
    }
    // a normalizer that says every DN is the same, or that ignores the values
    let constant: Normalizer = |_| String::new();
    let types_only: Normalizer = |s| {
        parse(s).map_or_else(
            |_| s.to_string(),
            |d| {
                d.rdns
                    .iter()
                    .map(|r| {
                        r.iter()
                            .map(|a| a.attr.clone())
                            .collect::<Vec<_>>()
                            .join("+")
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            },
        )
    };
    for broken in [constant, types_only] {
        assert!(fails((model(), style()), |(m, mut st)| {
            different_differ(broken, &m, &near_miss(&m), &mut st)
        }));
    }
    // not idempotent: escapes its own escapes
    let doubling: Normalizer = |s| normalize_dn(s).replace('\\', "\\\\");
    assert!(fails((model(), style()), |(m, mut st)| {
        idempotent(doubling, &render(&m, &mut st))
    }));
    // an escaper that leaves leading and trailing spaces bare, or `#` first
    let bare_spaces: Escaper = |v| escape(v).replace("\\ ", " ");
    let bare_hash: Escaper = |v| escape(v).replace("\\#", "#");
    for broken in [bare_spaces, bare_hash] {
        assert!(fails(bytes(), |v| round_trips(broken, &v)));
    }
    // ldap3's own construction panics on a DN that is not UTF-8
    let ldap3_construct: Builder = |t| {
        let e = ldap3::SearchEntry::construct(ldap3::ResultEntry::new(t));
        Ok(e.dn.into_bytes())
    };
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let caught = fails((bytes(), raw_attrs()), |(dn, attrs)| {
        entry_or_reason(ldap3_construct, &dn, &attrs)
    });
    std::panic::set_hook(hook);
    assert!(caught);
}

#[test]
fn display_of_raw_bytes_is_a_dn_that_parses_back_to_them() {
    let raw = b"cn=a\xff\xfe,dc=x";
    let shown = dn::display_bytes(raw);
    let d = parse(&shown).unwrap();
    assert_eq!(d.rdns[0][0].value, b"a\xff\xfe".to_vec());
}
