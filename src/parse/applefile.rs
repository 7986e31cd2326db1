//! AppleSingle and AppleDouble headers (RFC 1740), which older Mac mail programs send as
//! `application/applefile`: a table of entries (data fork, resource fork, real name, …).
//! Read here only for the file's real name and, in AppleSingle, its data fork: the file
//! people want. Every offset is checked against the data.

const APPLE_SINGLE: u32 = 0x0005_1600;
const APPLE_DOUBLE: u32 = 0x0005_1607;
const ENTRY_DATA_FORK: u32 = 1;
const ENTRY_REAL_NAME: u32 = 3;
/// Magic, version and filler before the entry count.
const HEADER: usize = 24;
const ENTRY: usize = 12;

/// The file's real name, from either kind of header.
pub fn real_name(data: &[u8]) -> Option<String> {
    let bytes = entry(data, ENTRY_REAL_NAME)?;
    let name = match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        // Classic Mac OS names are Mac Roman.
        Err(_) => encoding_rs::Encoding::for_label(b"macintosh")?.decode_without_bom_handling(bytes).0.into_owned(),
    };
    Some(name.trim_end_matches('\0').to_string()).filter(|n| !n.trim().is_empty())
}

/// The data fork of an AppleSingle file (AppleDouble sends it as a separate part).
pub fn data_fork(data: &[u8]) -> Option<&[u8]> {
    if be32(data, 0)? != APPLE_SINGLE {
        return None;
    }
    entry(data, ENTRY_DATA_FORK)
}

fn entry(data: &[u8], wanted: u32) -> Option<&[u8]> {
    let magic = be32(data, 0)?;
    if magic != APPLE_SINGLE && magic != APPLE_DOUBLE {
        return None;
    }
    let count = u16::from_be_bytes(data.get(HEADER..HEADER + 2)?.try_into().ok()?);
    // The count is at most 65,535, and each entry is read from the data, not allocated.
    (0..usize::from(count)).find_map(|i| {
        let at = HEADER + 2 + i * ENTRY;
        if be32(data, at)? != wanted {
            return None;
        }
        let offset = usize::try_from(be32(data, at + 4)?).ok()?;
        let len = usize::try_from(be32(data, at + 8)?).ok()?;
        data.get(offset..offset.checked_add(len)?)
    })
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An AppleSingle/AppleDouble header with the given entries (id, bytes) after it.
    pub(crate) fn build(magic: u32, entries: &[(u32, &[u8])]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        out.extend_from_slice(&0x0002_0000u32.to_be_bytes());
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&(entries.len() as u16).to_be_bytes());
        let mut offset = HEADER + 2 + entries.len() * ENTRY;
        for (id, bytes) in entries {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&(offset as u32).to_be_bytes());
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            offset += bytes.len();
        }
        for (_, bytes) in entries {
            out.extend_from_slice(bytes);
        }
        out
    }

    #[test]
    fn real_name_and_data_fork_are_found() {
        let single = build(APPLE_SINGLE, &[(ENTRY_REAL_NAME, b"Caf\x8e.txt"), (ENTRY_DATA_FORK, b"the data")]);
        assert_eq!(real_name(&single).as_deref(), Some("Café.txt"));
        assert_eq!(data_fork(&single), Some(&b"the data"[..]));
        let double = build(APPLE_DOUBLE, &[(2, b"resource"), (ENTRY_REAL_NAME, "Grüße.pdf".as_bytes())]);
        assert_eq!(real_name(&double).as_deref(), Some("Grüße.pdf"));
        assert_eq!(data_fork(&double), None);
    }

    #[test]
    fn damaged_headers_give_nothing_and_never_panic() {
        let mut bad = build(APPLE_SINGLE, &[(ENTRY_DATA_FORK, b"data")]);
        let at = HEADER + 2 + 4;
        bad[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(data_fork(&bad), None);
        let mut many = build(APPLE_DOUBLE, &[]);
        many[HEADER..HEADER + 2].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(real_name(&many), None);
        let full = build(APPLE_SINGLE, &[(ENTRY_REAL_NAME, b"n"), (ENTRY_DATA_FORK, b"d")]);
        for cut in 0..full.len() {
            let _ = (real_name(&full[..cut]), data_fork(&full[..cut]));
        }
    }
}
