//! TNEF, the wrapper Outlook and Exchange put around a message's attachments when they send
//! "rich text" mail (`winmail.dat`, `application/ms-tnef`). Other mail programs show only an
//! opaque `winmail.dat`; the files inside are unpacked here so that a case shows them.
//!
//! The stream (MS-OXTNEF): a signature, a two-byte key, then attribute records
//! `level u8 | id u32 | length u32 | data | checksum u16`, little-endian. Each attachment
//! begins with an `attAttachRendData` record; its `attAttachTitle` (short name),
//! `attAttachData` (the bytes) and `attAttachment` (MAPI properties: long file name, MIME
//! type, content id, or the bytes themselves) follow. Every length is checked against the
//! bytes that remain before anything is sliced, so nothing is ever allocated from a length
//! field, and every loop ends with the data.

use encoding_rs::Encoding;

const SIGNATURE: u32 = 0x223E_9F78;
const LEVEL_MESSAGE: u8 = 1;
const LEVEL_ATTACHMENT: u8 = 2;

// Attribute tags: the low 16 bits of an attribute id (the high 16 bits name its type, which
// writers do not always fill in the same way).
const ATT_ATTACH_DATA: u16 = 0x800F;
const ATT_ATTACH_TITLE: u16 = 0x8010;
const ATT_ATTACH_REND_DATA: u16 = 0x9002;
const ATT_ATTACHMENT: u16 = 0x9005;
const ATT_OEM_CODEPAGE: u16 = 0x9007;

// MAPI property tags of an attachment.
const PR_DISPLAY_NAME: u16 = 0x3001;
const PR_ATTACH_DATA: u16 = 0x3701;
const PR_ATTACH_FILENAME: u16 = 0x3704;
const PR_ATTACH_LONG_FILENAME: u16 = 0x3707;
const PR_ATTACH_MIME_TAG: u16 = 0x370E;
const PR_ATTACH_CONTENT_ID: u16 = 0x3712;
/// Tags from here up are named properties, which carry a GUID and a name or number first.
const FIRST_NAMED_TAG: u16 = 0x8000;

// MAPI property types.
const PT_NULL: u16 = 0x0001;
const PT_SHORT: u16 = 0x0002;
const PT_LONG: u16 = 0x0003;
const PT_FLOAT: u16 = 0x0004;
const PT_DOUBLE: u16 = 0x0005;
const PT_CURRENCY: u16 = 0x0006;
const PT_APPTIME: u16 = 0x0007;
const PT_ERROR: u16 = 0x000A;
const PT_BOOLEAN: u16 = 0x000B;
const PT_OBJECT: u16 = 0x000D;
const PT_I8: u16 = 0x0014;
const PT_STRING8: u16 = 0x001E;
const PT_UNICODE: u16 = 0x001F;
const PT_SYSTIME: u16 = 0x0040;
const PT_CLSID: u16 = 0x0048;
const PT_BINARY: u16 = 0x0102;
const MV_FLAG: u16 = 0x1000;

/// IID_IMessage as stored: an attachment object that starts with it is an attached message,
/// itself a TNEF stream.
const IID_IMESSAGE: [u8; 16] =
    [0x07, 0x03, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x46];
/// How deep attached messages inside a TNEF stream are followed.
const MAX_EMBEDDED_DEPTH: usize = 3;

/// One file carried in a TNEF stream, as its sender named and typed it (not yet made safe).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TnefFile {
    pub name: Option<String>,
    pub content_type: Option<String>,
    pub content_id: Option<String>,
    pub data: Vec<u8>,
}

/// What a TNEF stream held, and what was wrong with it (for the mail's problems).
#[derive(Debug, Default)]
pub struct Unpacked {
    pub files: Vec<TnefFile>,
    pub problems: Vec<String>,
}

/// True when `data` starts with the TNEF signature.
pub fn is_tnef(data: &[u8]) -> bool {
    data.get(..4) == Some(&SIGNATURE.to_le_bytes()[..])
}

/// The files in a TNEF stream, at most `max_files`. Damage (a truncated record, a wrong
/// checksum, garbage after the last record) is noted; files read before it are kept.
pub fn unpack(data: &[u8], max_files: usize) -> Unpacked {
    let mut out = Unpacked::default();
    let mut dropped = 0usize;
    unpack_into(data, 0, max_files, &mut out, &mut dropped);
    if dropped > 0 {
        out.problems.push(format!("winmail.dat holds more than {max_files} files; {dropped} more were not unpacked"));
    }
    out
}

fn unpack_into(data: &[u8], depth: usize, max_files: usize, out: &mut Unpacked, dropped: &mut usize) {
    let mut r = Reader::new(data);
    if r.u32() != Some(SIGNATURE) || r.u16().is_none() {
        out.problems.push("winmail.dat is not a TNEF stream; kept as it is".into());
        return;
    }
    let mut codepage = encoding_rs::WINDOWS_1252;
    let mut current: Option<Pending<'_>> = None;
    let mut bad_checksums = 0usize;
    while r.remaining() > 0 {
        let Some(record) = Record::read(&mut r) else {
            out.problems.push("winmail.dat ends inside a record; files read before it were kept".into());
            break;
        };
        if record.level != LEVEL_MESSAGE && record.level != LEVEL_ATTACHMENT {
            out.problems.push("winmail.dat has data after its last record; it was ignored".into());
            break;
        }
        bad_checksums += usize::from(!record.checksum_ok);
        match (record.level, record.tag) {
            (LEVEL_MESSAGE, ATT_OEM_CODEPAGE) => {
                if let Some(cp) = Reader::new(record.data).u32() {
                    codepage = encoding_for_codepage(cp);
                }
            }
            (LEVEL_ATTACHMENT, ATT_ATTACH_REND_DATA) => {
                if let Some(done) = current.replace(Pending::default()) {
                    done.finish(depth, max_files, out, dropped);
                }
            }
            (LEVEL_ATTACHMENT, ATT_ATTACH_TITLE) => {
                current.get_or_insert_with(Pending::default).title = Some(decode_8bit(record.data, codepage));
            }
            (LEVEL_ATTACHMENT, ATT_ATTACH_DATA) => {
                current.get_or_insert_with(Pending::default).data = Some(record.data);
            }
            (LEVEL_ATTACHMENT, ATT_ATTACHMENT) => {
                current.get_or_insert_with(Pending::default).props = Props::read(record.data, codepage);
            }
            _ => {}
        }
    }
    if let Some(done) = current {
        done.finish(depth, max_files, out, dropped);
    }
    if bad_checksums > 0 {
        out.problems.push(format!("winmail.dat: {bad_checksums} record(s) with a wrong checksum; kept as read"));
    }
}

/// An attachment whose records are still being read.
#[derive(Default)]
struct Pending<'a> {
    title: Option<String>,
    data: Option<&'a [u8]>,
    props: Props<'a>,
}

impl Pending<'_> {
    fn finish(self, depth: usize, max_files: usize, out: &mut Unpacked, dropped: &mut usize) {
        let object = self.props.data;
        if self.data.is_none() {
            if let Some(Stored::Object(object)) = object {
                if let Some(inner) = object.strip_prefix(&IID_IMESSAGE[..]) {
                    // An attached message: its own files are what people want.
                    if depth < MAX_EMBEDDED_DEPTH {
                        unpack_into(inner, depth + 1, max_files, out, dropped);
                    } else {
                        out.problems.push("winmail.dat: messages attached too deeply; inner ones not unpacked".into());
                    }
                    return;
                }
            }
        }
        let data = match (self.data, object) {
            (Some(d), _) | (None, Some(Stored::Binary(d))) => d,
            // An OLE object: its storage follows the interface id.
            (None, Some(Stored::Object(o))) => o.get(16..).unwrap_or_default(),
            (None, None) => {
                // Links to files elsewhere carry no bytes to keep.
                return;
            }
        };
        if out.files.len() >= max_files {
            *dropped += 1;
            return;
        }
        let name = [self.props.long_name, self.title, self.props.file_name, self.props.display_name]
            .into_iter()
            .flatten()
            .find(|n| !n.trim().is_empty());
        out.files.push(TnefFile {
            name,
            content_type: self.props.mime_type,
            content_id: self.props.content_id,
            data: data.to_vec(),
        });
    }
}

enum Stored<'a> {
    Binary(&'a [u8]),
    Object(&'a [u8]),
}

/// The MAPI properties of an attachment that matter here (the first value of each).
#[derive(Default)]
struct Props<'a> {
    long_name: Option<String>,
    file_name: Option<String>,
    display_name: Option<String>,
    mime_type: Option<String>,
    content_id: Option<String>,
    data: Option<Stored<'a>>,
}

impl<'a> Props<'a> {
    /// Reads properties until the data ends or a property of an unknown type makes the rest
    /// impossible to locate; what was read before is kept.
    fn read(data: &'a [u8], codepage: &'static Encoding) -> Props<'a> {
        let mut props = Props::default();
        let mut r = Reader::new(data);
        let Some(count) = r.u32() else { return props };
        // Each property takes at least four bytes, so a hostile count ends with the data.
        for _ in 0..count {
            let (Some(ptype), Some(tag)) = (r.u16(), r.u16()) else { break };
            if tag >= FIRST_NAMED_TAG && skip_property_name(&mut r).is_none() {
                break;
            }
            let Some(first) = read_values(&mut r, ptype) else { break };
            let Some(value) = first else { continue };
            let base = ptype & !MV_FLAG;
            let text = || match base {
                PT_UNICODE => Some(decode_utf16le(value)),
                PT_STRING8 => Some(decode_8bit(value, codepage)),
                _ => None,
            };
            match tag {
                PR_ATTACH_LONG_FILENAME if props.long_name.is_none() => props.long_name = text(),
                PR_ATTACH_FILENAME if props.file_name.is_none() => props.file_name = text(),
                PR_DISPLAY_NAME if props.display_name.is_none() => props.display_name = text(),
                PR_ATTACH_MIME_TAG if props.mime_type.is_none() => props.mime_type = text(),
                PR_ATTACH_CONTENT_ID if props.content_id.is_none() => props.content_id = text(),
                PR_ATTACH_DATA if props.data.is_none() => {
                    props.data = match base {
                        PT_BINARY => Some(Stored::Binary(value)),
                        PT_OBJECT => Some(Stored::Object(value)),
                        _ => None,
                    }
                }
                _ => {}
            }
        }
        props
    }
}

/// Skips the GUID and the number or UTF-16 name of a named property.
fn skip_property_name(r: &mut Reader<'_>) -> Option<()> {
    r.bytes(16)?;
    match r.u32()? {
        0 => {
            r.u32()?;
        }
        _ => {
            let len = r.u32()?;
            r.padded(len)?;
        }
    }
    Some(())
}

/// Reads the value(s) of one property; `Some(Some(bytes))` holds the first value of a
/// variable-length type, `Some(None)` a fixed-size one, `None` damage or an unknown type.
fn read_values<'a>(r: &mut Reader<'a>, ptype: u16) -> Option<Option<&'a [u8]>> {
    let base = ptype & !MV_FLAG;
    let variable = matches!(base, PT_STRING8 | PT_UNICODE | PT_BINARY | PT_OBJECT);
    // Variable-length values always come with a count, fixed ones only when multi-valued.
    let count = if variable || ptype & MV_FLAG != 0 { r.u32()? } else { 1 };
    let mut first = None;
    // Every value takes at least four bytes, so a hostile count ends with the data.
    for _ in 0..count {
        match base {
            // Two-byte values are padded to four.
            PT_NULL | PT_SHORT | PT_BOOLEAN | PT_LONG | PT_FLOAT | PT_ERROR => {
                r.bytes(4)?;
            }
            PT_DOUBLE | PT_CURRENCY | PT_APPTIME | PT_I8 | PT_SYSTIME => {
                r.bytes(8)?;
            }
            PT_CLSID => {
                r.bytes(16)?;
            }
            _ if variable => {
                let len = r.u32()?;
                let value = r.padded(len)?;
                first.get_or_insert(value);
            }
            _ => return None,
        }
    }
    Some(first)
}

/// One attribute record.
struct Record<'a> {
    level: u8,
    tag: u16,
    data: &'a [u8],
    checksum_ok: bool,
}

impl<'a> Record<'a> {
    fn read(r: &mut Reader<'a>) -> Option<Record<'a>> {
        let level = r.u8()?;
        let id = r.u32()?;
        let len = r.u32()?;
        let data = r.bytes(usize::try_from(len).ok()?)?;
        let sum = data.iter().fold(0u16, |s, &b| s.wrapping_add(u16::from(b)));
        // A stream cut right after the last record's data still has all of that data.
        let checksum_ok = r.u16().is_none_or(|c| c == sum);
        Some(Record { level, tag: (id & 0xFFFF) as u16, data, checksum_ok })
    }
}

/// A cursor over bytes that checks every length before it slices.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// `len` bytes followed by padding to a multiple of four (the padding may be missing at
    /// the very end of the data).
    fn padded(&mut self, len: u32) -> Option<&'a [u8]> {
        let value = self.bytes(usize::try_from(len).ok()?)?;
        let pad = (4 - value.len() % 4) % 4;
        self.pos = (self.pos + pad).min(self.data.len());
        Some(value)
    }

    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.bytes(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// 8-bit text in the stream's code page, up to its terminating NUL.
fn decode_8bit(bytes: &[u8], codepage: &'static Encoding) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    codepage.decode_without_bom_handling(&bytes[..end]).0.into_owned()
}

/// UTF-16LE text up to its terminating NUL.
fn decode_utf16le(bytes: &[u8]) -> String {
    let units = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&u| u != 0);
    char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect()
}

/// The encoding of a Windows code page number (`attOemCodepage`); Windows-1252, the
/// usual one, for those encoding_rs does not know (DOS code pages).
fn encoding_for_codepage(cp: u32) -> &'static Encoding {
    let label = match cp {
        65001 => "utf-8".to_string(),
        932 => "shift_jis".to_string(),
        936 => "gbk".to_string(),
        949 => "euc-kr".to_string(),
        950 => "big5".to_string(),
        20866 => "koi8-r".to_string(),
        21866 => "koi8-u".to_string(),
        10000 => "macintosh".to_string(),
        28591..=28606 => format!("iso-8859-{}", cp - 28590),
        874 | 1250..=1258 => format!("windows-{cp}"),
        _ => String::new(),
    };
    Encoding::for_label(label.as_bytes()).unwrap_or(encoding_rs::WINDOWS_1252)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes TNEF streams for tests: records with their checksums, MAPI property blocks.
    pub(crate) mod writer {
        pub const ID_REND_DATA: u32 = 0x0006_9002;
        pub const ID_TITLE: u32 = 0x0001_8010;
        pub const ID_DATA: u32 = 0x0006_800F;
        pub const ID_ATTACHMENT: u32 = 0x0006_9005;
        pub const ID_OEM_CODEPAGE: u32 = 0x0006_9007;
        pub const ID_TNEF_VERSION: u32 = 0x0008_9006;
        pub const ID_MAPI_PROPS: u32 = 0x0006_9003;

        pub fn stream(records: &[Vec<u8>]) -> Vec<u8> {
            let mut out = 0x223E_9F78u32.to_le_bytes().to_vec();
            out.extend_from_slice(&0x0102u16.to_le_bytes());
            for r in records {
                out.extend_from_slice(r);
            }
            out
        }

        pub fn record(level: u8, id: u32, data: &[u8]) -> Vec<u8> {
            let mut out = vec![level];
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
            let sum = data.iter().fold(0u16, |s, &b| s.wrapping_add(u16::from(b)));
            out.extend_from_slice(&sum.to_le_bytes());
            out
        }

        /// The usual head of a stream: version and code page.
        pub fn head(codepage: u32) -> Vec<Vec<u8>> {
            let mut cp = codepage.to_le_bytes().to_vec();
            cp.extend_from_slice(&0u32.to_le_bytes());
            vec![record(1, ID_TNEF_VERSION, &0x0001_0000u32.to_le_bytes()), record(1, ID_OEM_CODEPAGE, &cp)]
        }

        /// A MAPI property block; each entry is (type, tag, encoded value).
        pub fn props(list: &[(u16, u16, Vec<u8>)]) -> Vec<u8> {
            let mut out = (list.len() as u32).to_le_bytes().to_vec();
            for (ptype, tag, value) in list {
                out.extend_from_slice(&ptype.to_le_bytes());
                out.extend_from_slice(&tag.to_le_bytes());
                out.extend_from_slice(value);
            }
            out
        }

        /// A single variable-length value: count 1, length, bytes, padding.
        pub fn var(bytes: &[u8]) -> Vec<u8> {
            let mut out = 1u32.to_le_bytes().to_vec();
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
            out.resize(out.len() + (4 - bytes.len() % 4) % 4, 0);
            out
        }

        pub fn unicode(s: &str) -> Vec<u8> {
            let bytes: Vec<u8> = s.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect();
            var(&bytes)
        }

        /// One attachment: rendering record, optional title, optional data, optional props.
        pub fn attachment(title: Option<&[u8]>, data: Option<&[u8]>, props: Option<Vec<u8>>) -> Vec<Vec<u8>> {
            let mut out = vec![record(2, ID_REND_DATA, &[1, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0])];
            if let Some(t) = title {
                out.push(record(2, ID_TITLE, t));
            }
            if let Some(d) = data {
                out.push(record(2, ID_DATA, d));
            }
            if let Some(p) = props {
                out.push(record(2, ID_ATTACHMENT, &p));
            }
            out
        }
    }

    use writer::*;

    fn build(parts: Vec<Vec<Vec<u8>>>) -> Vec<u8> {
        stream(&parts.concat())
    }

    fn sha(data: &[u8]) -> String {
        crate::digest::sha256_hex(data)
    }

    #[test]
    fn files_come_out_with_their_long_names_types_and_exact_bytes() {
        let pdf: Vec<u8> = (0..=255u8).cycle().take(70_001).collect();
        let props = props(&[
            (PT_LONG, 0x0E21, 7u32.to_le_bytes().to_vec()),
            (PT_UNICODE, PR_ATTACH_LONG_FILENAME, unicode("Quarterly report – 2024.pdf")),
            (PT_STRING8, PR_ATTACH_MIME_TAG, var(b"application/pdf\0")),
            (PT_STRING8, PR_ATTACH_CONTENT_ID, var(b"part1.abc@example.com\0")),
        ]);
        let tnef = build(vec![
            head(1252),
            vec![record(1, ID_MAPI_PROPS, &writer::props(&[(PT_LONG, 0x0017, 1u32.to_le_bytes().to_vec())]))],
            attachment(Some(b"QUARTE~1.PDF\0"), Some(&pdf), Some(props)),
            attachment(Some(b"notes.txt\0"), Some(b"plain notes\r\n"), None),
        ]);
        assert!(is_tnef(&tnef));
        let out = unpack(&tnef, 100);
        assert_eq!(out.problems, Vec::<String>::new());
        assert_eq!(out.files.len(), 2);
        assert_eq!(out.files[0].name.as_deref(), Some("Quarterly report – 2024.pdf"));
        assert_eq!(out.files[0].content_type.as_deref(), Some("application/pdf"));
        assert_eq!(out.files[0].content_id.as_deref(), Some("part1.abc@example.com"));
        assert_eq!(sha(&out.files[0].data), sha(&pdf));
        assert_eq!(out.files[1].name.as_deref(), Some("notes.txt"));
        assert_eq!(out.files[1].data, b"plain notes\r\n");
    }

    #[test]
    fn eight_bit_names_are_read_in_the_streams_code_page() {
        // "Отчёт.txt" in windows-1251, and "Größe.txt" in windows-1252 (no code page record).
        let cyrillic = build(vec![head(1251), attachment(Some(b"\xce\xf2\xf7\xb8\xf2.txt\0"), Some(b"x"), None)]);
        assert_eq!(unpack(&cyrillic, 10).files[0].name.as_deref(), Some("Отчёт.txt"));
        let latin = build(vec![attachment(Some(b"Gr\xf6\xdfe.txt\0"), Some(b"x"), None)]);
        assert_eq!(unpack(&latin, 10).files[0].name.as_deref(), Some("Größe.txt"));
    }

    #[test]
    fn data_held_in_mapi_properties_and_attached_messages_are_unpacked() {
        let in_props = props(&[
            (PT_STRING8, PR_ATTACH_LONG_FILENAME, var(b"from-props.bin\0")),
            (PT_BINARY, PR_ATTACH_DATA, var(b"\x00\x01\x02\x03\x04")),
        ]);
        // An attached message whose own TNEF carries a file, named by PR_DISPLAY_NAME only.
        let inner = build(vec![attachment(
            None,
            Some(b"inner bytes"),
            Some(props(&[(PT_UNICODE, PR_DISPLAY_NAME, unicode("inner.txt"))])),
        )]);
        let mut object = IID_IMESSAGE.to_vec();
        object.extend_from_slice(&inner);
        let embedded = props(&[
            // A named property first, which must be skipped correctly.
            {
                let mut v = vec![0xAB; 16];
                v.extend_from_slice(&1u32.to_le_bytes());
                v.extend_from_slice(&6u32.to_le_bytes());
                v.extend_from_slice(&[b'x', 0, b'y', 0, 0, 0, 0, 0]);
                v.extend_from_slice(&var(b"named value"));
                (PT_STRING8, 0x8005, v)
            },
            (PT_OBJECT, PR_ATTACH_DATA, var(&object)),
        ]);
        let tnef = build(vec![attachment(None, None, Some(in_props)), attachment(None, None, Some(embedded))]);
        let out = unpack(&tnef, 10);
        let names: Vec<_> = out.files.iter().map(|f| f.name.as_deref().unwrap_or("-")).collect();
        assert_eq!(names, ["from-props.bin", "inner.txt"]);
        assert_eq!(out.files[0].data, b"\x00\x01\x02\x03\x04");
        assert_eq!(out.files[1].data, b"inner bytes");
    }

    #[test]
    fn self_nesting_messages_stop_at_the_depth_limit() {
        let mut tnef = build(vec![attachment(Some(b"deepest.txt\0"), Some(b"bottom"), None)]);
        for _ in 0..10 {
            let mut object = IID_IMESSAGE.to_vec();
            object.extend_from_slice(&tnef);
            tnef = build(vec![attachment(None, None, Some(props(&[(PT_OBJECT, PR_ATTACH_DATA, var(&object))])))]);
        }
        let out = unpack(&tnef, 10);
        assert!(out.files.is_empty());
        assert!(out.problems.iter().any(|p| p.contains("too deeply")), "{:?}", out.problems);
    }

    #[test]
    fn hostile_lengths_and_counts_neither_panic_nor_allocate() {
        let good = attachment(Some(b"kept.txt\0"), Some(b"kept"), None);
        // A record claiming 4 GiB after a good attachment.
        let mut huge = vec![2u8];
        huge.extend_from_slice(&(ID_DATA).to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(b"short");
        let tnef = build(vec![good.clone(), vec![huge]]);
        let out = unpack(&tnef, 10);
        assert_eq!(out.files.len(), 1);
        assert_eq!(out.files[0].data, b"kept");
        assert!(out.problems.iter().any(|p| p.contains("ends inside a record")), "{:?}", out.problems);

        // Property counts and value lengths of u32::MAX.
        let mut props = u32::MAX.to_le_bytes().to_vec();
        props.extend_from_slice(&PT_BINARY.to_le_bytes());
        props.extend_from_slice(&PR_ATTACH_DATA.to_le_bytes());
        props.extend_from_slice(&u32::MAX.to_le_bytes());
        let tnef = build(vec![attachment(Some(b"a\0"), Some(b"data"), Some(props))]);
        assert_eq!(unpack(&tnef, 10).files[0].data, b"data");

        // Every prefix of a valid stream, and bytes flipped one by one.
        let full = build(vec![
            head(1252),
            attachment(
                Some(b"x.txt\0"),
                Some(b"xx"),
                Some(writer::props(&[(PT_UNICODE, PR_ATTACH_LONG_FILENAME, unicode("long.txt"))])),
            ),
        ]);
        for cut in 0..full.len() {
            let _ = unpack(&full[..cut], 10);
        }
        for i in 0..full.len() {
            let mut bent = full.clone();
            bent[i] ^= 0xFF;
            let _ = unpack(&bent, 10);
        }
    }

    #[test]
    fn damage_is_reported_and_what_was_read_is_kept() {
        let mut bad = record(2, ID_DATA, b"payload");
        let n = bad.len();
        bad[n - 1] ^= 0x55;
        let mut tnef = build(vec![attachment(Some(b"a.txt\0"), None, None), vec![bad]]);
        tnef.extend_from_slice(b"\r\n\r\ntrailing garbage");
        let out = unpack(&tnef, 10);
        assert_eq!(out.files.len(), 1);
        assert_eq!(out.files[0].data, b"payload");
        assert_eq!(out.problems.len(), 2, "{:?}", out.problems);

        let out = unpack(b"not tnef at all", 10);
        assert!(out.files.is_empty() && out.problems[0].contains("not a TNEF stream"));
    }

    #[test]
    fn at_most_max_files_are_unpacked() {
        let many: Vec<Vec<Vec<u8>>> = (0..50).map(|_| attachment(Some(b"f\0"), Some(b"1"), None)).collect();
        let out = unpack(&build(many), 20);
        assert_eq!(out.files.len(), 20);
        assert!(out.problems.iter().any(|p| p.contains("30 more")), "{:?}", out.problems);
    }
}
