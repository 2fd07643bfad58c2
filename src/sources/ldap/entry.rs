//! Directory entries built from the raw `SearchResultEntry` (RFC 4511 §4.5.2) instead of
//! ldap3's `SearchEntry::construct`, which panics on a DN or attribute name that is not UTF-8
//! or on a malformed structure. Here every such entry is an [`Unreadable`] with a reason; values
//! stay bytes until asked for as text (binary attributes such as `objectGUID` keep working).

use ldap3::asn1::{PL, StructureTag, TagClass};

use super::dn::display_bytes;

/// One entry: its DN and its attributes (description as sent, values as bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    pub attrs: Vec<(String, Vec<Vec<u8>>)>,
}

/// An entry that cannot be used: what to call it (its DN, bytes that are not UTF-8 escaped as
/// `\xx`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub dn: String,
    pub reason: String,
}

/// The tag of a `SearchResultEntry`: `[APPLICATION 4]`.
const SEARCH_RESULT_ENTRY: u64 = 4;

fn primitive(t: StructureTag) -> Option<Vec<u8>> {
    match t.payload {
        PL::P(b) => Some(b),
        PL::C(_) => None,
    }
}

fn constructed(t: StructureTag) -> Option<Vec<StructureTag>> {
    match t.payload {
        PL::C(v) => Some(v),
        PL::P(_) => None,
    }
}

impl Entry {
    /// Builds an entry from the raw structure of a search result entry.
    pub fn from_raw(tag: StructureTag) -> Result<Entry, Unreadable> {
        let unreadable = |dn: &str, reason: &str| Unreadable {
            dn: dn.to_string(),
            reason: reason.to_string(),
        };
        if tag.class != TagClass::Application || tag.id != SEARCH_RESULT_ENTRY {
            return Err(unreadable(
                "(unknown)",
                "the server sent a malformed search result (not an entry)",
            ));
        }
        let mut parts = constructed(tag)
            .ok_or_else(|| unreadable("(unknown)", "the server sent a malformed entry"))?
            .into_iter();
        let raw_dn = parts
            .next()
            .and_then(primitive)
            .ok_or_else(|| unreadable("(unknown)", "the server sent an entry without a DN"))?;
        let dn = match String::from_utf8(raw_dn) {
            Ok(dn) => dn,
            Err(e) => {
                return Err(unreadable(
                    &display_bytes(e.as_bytes()),
                    "the DN is not valid UTF-8",
                ));
            }
        };
        let malformed = |what: &str| unreadable(&dn, &format!("the server sent {what}"));
        let list = match parts.next() {
            Some(t) => constructed(t).ok_or_else(|| malformed("a malformed attribute list"))?,
            None => Vec::new(),
        };
        let mut attrs = Vec::with_capacity(list.len());
        for pa in list {
            let mut pa = constructed(pa)
                .ok_or_else(|| malformed("a malformed attribute"))?
                .into_iter();
            let name = pa
                .next()
                .and_then(primitive)
                .ok_or_else(|| malformed("an attribute without a name"))?;
            let name = match String::from_utf8(name) {
                Ok(n) => n,
                Err(e) => {
                    return Err(unreadable(
                        &dn,
                        &format!(
                            "attribute name `{}` is not valid UTF-8",
                            display_bytes(e.as_bytes())
                        ),
                    ));
                }
            };
            let values = match pa.next() {
                Some(t) => constructed(t)
                    .ok_or_else(|| malformed(&format!("malformed values of `{name}`")))?
                    .into_iter()
                    .map(primitive)
                    .collect::<Option<Vec<Vec<u8>>>>()
                    .ok_or_else(|| malformed(&format!("a malformed value of `{name}`")))?,
                None => Vec::new(),
            };
            attrs.push((name, values));
        }
        Ok(Entry { dn, attrs })
    }

    /// The values of an attribute (its name matched without regard to case).
    pub fn values(&self, name: &str) -> Option<&[Vec<u8>]> {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of an attribute as bytes (binary attributes).
    pub fn first_bytes(&self, name: &str) -> Option<&[u8]> {
        self.values(name).and_then(|v| v.first()).map(Vec::as_slice)
    }

    /// The first value of a text attribute; `Err` holds the reason it cannot be used (not
    /// UTF-8).
    pub fn first_text(&self, name: &str) -> Result<Option<&str>, String> {
        match self.first_bytes(name) {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b).map(Some).map_err(|_| {
                format!(
                    "attribute `{name}` is not valid UTF-8 (`{}`)",
                    display_bytes(b)
                )
            }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn p(b: &[u8]) -> StructureTag {
        StructureTag {
            class: TagClass::Universal,
            id: 4,
            payload: PL::P(b.to_vec()),
        }
    }

    fn c(class: TagClass, id: u64, v: Vec<StructureTag>) -> StructureTag {
        StructureTag {
            class,
            id,
            payload: PL::C(v),
        }
    }

    /// A raw search result entry with these DN bytes and attributes.
    pub(crate) fn raw(dn: &[u8], attrs: &[(&[u8], &[&[u8]])]) -> StructureTag {
        let list = attrs
            .iter()
            .map(|(n, vals)| {
                c(
                    TagClass::Universal,
                    16,
                    vec![
                        p(n),
                        c(TagClass::Universal, 17, vals.iter().map(|v| p(v)).collect()),
                    ],
                )
            })
            .collect();
        c(
            TagClass::Application,
            4,
            vec![p(dn), c(TagClass::Universal, 16, list)],
        )
    }

    #[test]
    fn a_good_entry_keeps_text_and_binary_values() {
        let guid: &[u8] = &[0xff, 0xfe, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
        let e = Entry::from_raw(raw(
            b"cn=a,dc=x",
            &[(b"mail", &[b"a@x.com"]), (b"objectGUID", &[guid])],
        ))
        .unwrap();
        assert_eq!(e.dn, "cn=a,dc=x");
        assert_eq!(e.first_text("MAIL"), Ok(Some("a@x.com")));
        assert_eq!(e.first_bytes("objectguid"), Some(guid));
        assert!(e.first_text("objectGUID").is_err());
        assert_eq!(e.first_text("uid"), Ok(None));
    }

    #[test]
    fn a_dn_that_is_not_utf8_is_unreadable_with_its_bytes_escaped() {
        let err = Entry::from_raw(raw(b"cn=bad\xff,dc=x", &[])).unwrap_err();
        assert_eq!(err.dn, r"cn=bad\ff,dc=x");
        assert_eq!(err.reason, "the DN is not valid UTF-8");
        let err = Entry::from_raw(raw(b"cn=a", &[(b"m\xc3", &[b"x"])])).unwrap_err();
        assert!(err.reason.contains(r"m\c3"), "{}", err.reason);
    }

    #[test]
    fn malformed_structures_are_unreadable() {
        let not_entry = c(TagClass::Application, 5, vec![]);
        assert!(Entry::from_raw(not_entry).is_err());
        let primitive_entry = StructureTag {
            class: TagClass::Application,
            id: 4,
            payload: PL::P(vec![1]),
        };
        assert!(Entry::from_raw(primitive_entry).is_err());
        let no_dn = c(TagClass::Application, 4, vec![]);
        assert!(Entry::from_raw(no_dn).is_err());
        let bad_attr = c(
            TagClass::Application,
            4,
            vec![p(b"cn=a"), c(TagClass::Universal, 16, vec![p(b"x")])],
        );
        assert_eq!(Entry::from_raw(bad_attr).unwrap_err().dn, "cn=a");
        let bad_value = c(
            TagClass::Application,
            4,
            vec![
                p(b"cn=a"),
                c(
                    TagClass::Universal,
                    16,
                    vec![c(
                        TagClass::Universal,
                        16,
                        vec![
                            p(b"mail"),
                            c(
                                TagClass::Universal,
                                17,
                                vec![c(TagClass::Universal, 16, vec![])],
                            ),
                        ],
                    )],
                ),
            ],
        );
        assert!(Entry::from_raw(bad_value).is_err());
    }
}
