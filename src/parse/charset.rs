//! Header text in whatever charset it arrived in.
//!
//! RFC 5322 wants headers in ASCII with RFC 2047 encoded-words for anything else; real mail
//! also carries raw 8-bit GBK, Big5, Shift_JIS, EUC-KR, KOI8-R, ISO-8859-x or windows-125x
//! bytes, and encoded-words whose label is wrong (UTF-8 bytes labelled ISO-8859-1, GBK bytes
//! labelled UTF-8, a multi-byte character split over two words). mail-parser replaces bytes
//! it cannot read as UTF-8 with U+FFFD before a display name or a file name reaches us, and
//! believes every label. So this module goes back to a header's raw bytes and, only when
//! something would come out wrong, rewrites the value as UTF-8: raw bytes decoded, every
//! broken run of encoded-words re-encoded as one UTF-8 encoded-word. mail-parser then parses
//! the rewritten value as usual, so addresses and parameters keep their exact structure
//! (a decoded comma in a display name must not split an address list).
//!
//! Which charset: the one the mail declares (the part's own Content-Type charset, then the
//! message's), when it decodes the bytes cleanly; otherwise the guess of `chardetng`
//! (Firefox's detector) over all undeclared header text of the mail at once, since short
//! names alone say little; otherwise a guess over the value alone.
//!
//! ASCII and UTF-8 values without encoded-words, nearly every header, cost one pass over
//! their bytes and no allocation.

use std::borrow::Cow;
use std::cell::OnceCell;

use base64::Engine as _;
use encoding_rs::{Encoding, UTF_8};
use mail_parser::{Header, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders};

/// Values longer than this are left as mail-parser reads them (bounds work on hostile input).
const MAX_VALUE: usize = 16 * 1024;
/// Most header bytes fed to the detector for one mail.
const MAX_DETECTOR_INPUT: usize = 64 * 1024;
/// Longest charset label and encoded-word payload looked for; longer is not an encoded-word
/// (RFC 2047 allows 75 characters for the whole word; real mail stays far below these).
const MAX_LABEL: usize = 64;
const MAX_WORD_DATA: usize = 4 * 1024;

/// Base64 as encoded-words carry it: padding often missing, trailing bits not always zero.
const WORD_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Where the charset of a decoded piece came from (for the mail's problem notes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The bytes are UTF-8 although the label said otherwise.
    Utf8,
    /// The label of the encoded-word itself.
    Label,
    /// A Content-Type charset of the part or the message.
    Declared,
    Guessed,
}

/// A header value rewritten so that mail-parser reads it right, and what was done.
#[derive(Debug)]
pub(super) struct Repaired {
    pub value: String,
    pub note: String,
}

/// What one mail says about its charsets, worked out once and only when a value needs it.
pub(super) struct MailCharsets<'m, 'x> {
    message: &'m Message<'x>,
    declared: OnceCell<Vec<&'static Encoding>>,
    guess: OnceCell<Option<&'static Encoding>>,
    tld: OnceCell<Option<String>>,
}

impl<'m, 'x> MailCharsets<'m, 'x> {
    pub(super) fn new(message: &'m Message<'x>) -> Self {
        MailCharsets { message, declared: OnceCell::new(), guess: OnceCell::new(), tld: OnceCell::new() }
    }

    /// The raw bytes of a header's value, without the surrounding whitespace and line end.
    pub(super) fn raw_value(&self, header: &Header<'_>) -> &'m [u8] {
        let raw: &'m [u8] = self.message.raw_message.as_ref();
        let value = raw.get(header.offset_start as usize..header.offset_end as usize).unwrap_or_default();
        value.trim_ascii()
    }

    /// A header value as readable text, encoded-words left as they are: UTF-8 as is,
    /// anything else decoded with the mail's charset (for `InboundMail::headers`).
    pub(super) fn text<'v>(&self, raw: &'v [u8]) -> Cow<'v, str> {
        match std::str::from_utf8(raw) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => {
                let (encoding, _) = self.choose(raw, None);
                let (text, _) = encoding.decode_without_bom_handling(raw);
                Cow::Owned(text.into_owned())
            }
        }
    }

    /// The value rewritten as UTF-8 when mail-parser would read it wrong (raw 8-bit bytes
    /// that are not UTF-8, encoded-words with a wrong label); `None` when it reads it right.
    /// `own` is the charset of the part the header belongs to, tried before the message's.
    pub(super) fn repair(&self, raw: &[u8], own: Option<&'static Encoding>) -> Option<Repaired> {
        if raw.len() > MAX_VALUE {
            return None;
        }
        // One pass over the bytes settles the common case.
        let (mut has_words, mut has_escape, mut has_8bit) = (false, false, false);
        for (i, &b) in raw.iter().enumerate() {
            match b {
                b'=' => has_words |= raw.get(i + 1) == Some(&b'?'),
                // Old Japanese mail writes ISO-2022-JP, 7-bit with escape sequences, straight
                // into headers; those bytes are ASCII and UTF-8 to everyone else.
                0x1b => has_escape = true,
                0x80.. => has_8bit = true,
                _ => {}
            }
        }
        let is_utf8 = !has_8bit || std::str::from_utf8(raw).is_ok();
        if is_utf8 && !has_words && !has_escape {
            return None;
        }
        let pieces = if has_words { split(raw) } else { vec![Piece::Text(raw)] };
        let mut notes = Vec::new();

        // Raw text outside encoded-words: one charset for all of it.
        let text_encoding = if is_utf8 {
            None
        } else {
            let undecodable: Vec<u8> = pieces
                .iter()
                .filter_map(|p| match p {
                    Piece::Text(t) if std::str::from_utf8(t).is_err() => Some(*t),
                    _ => None,
                })
                .flatten()
                .copied()
                .collect();
            if undecodable.is_empty() {
                None
            } else {
                let (encoding, source) = self.choose(&undecodable, own);
                notes.push(format!("8-bit text read as {} ({})", encoding.name(), source.describe()));
                Some(encoding)
            }
        };

        let mut out = String::with_capacity(raw.len() + 16);
        let mut changed = text_encoding.is_some();
        for run in runs(raw, &pieces) {
            match run {
                Run::Text(t) => match std::str::from_utf8(t) {
                    Ok(s) if has_escape && s.contains('\u{1b}') => {
                        match encoding_rs::ISO_2022_JP.decode_without_bom_handling_and_without_replacement(t) {
                            Some(text) => {
                                out.push_str(&text);
                                notes.push("ISO-2022-JP text without encoded-words decoded".to_string());
                                changed = true;
                            }
                            None => out.push_str(s),
                        }
                    }
                    Ok(s) => out.push_str(s),
                    Err(_) => {
                        let encoding = text_encoding.unwrap_or(encoding_rs::WINDOWS_1252);
                        out.push_str(&encoding.decode_without_bom_handling(t).0);
                    }
                },
                Run::Words { label, words, raw: run_raw } => {
                    let verbatim = std::str::from_utf8(run_raw).ok();
                    if let (Some(text), true) = (verbatim, words.iter().all(|w| reads_right(label, w))) {
                        out.push_str(text);
                        continue;
                    }
                    let bytes: Vec<u8> = words.concat();
                    let (text, source) = self.decode_word_bytes(label, &bytes, own);
                    if source != Source::Label || words.len() > 1 {
                        notes.push(format!(
                            "encoded-word labelled {} read as {}",
                            String::from_utf8_lossy(label),
                            source.describe_word()
                        ));
                    }
                    out.push_str("=?UTF-8?B?");
                    out.push_str(&WORD_BASE64.encode(text.as_bytes()));
                    out.push_str("?=");
                    changed = true;
                }
            }
        }
        // Line breaks inside a value are folds (mail-parser ended the header at any other);
        // made spaces, the value cannot become two headers when it is parsed again.
        changed.then(|| Repaired { value: out.replace(['\r', '\n'], " "), note: notes.join("; ") })
    }

    /// Decodes the encoded-words of a piece of header text (for a display name read from a
    /// broken address line); the text around them is kept as it is.
    pub(super) fn decode_words(&self, text: &str) -> String {
        if !text.contains("=?") {
            return text.to_string();
        }
        let pieces = split(text.as_bytes());
        let mut out = String::with_capacity(text.len());
        for run in runs(text.as_bytes(), &pieces) {
            match run {
                // Text pieces are cut from a str at ASCII boundaries, so they are UTF-8.
                Run::Text(t) => out.push_str(&String::from_utf8_lossy(t)),
                Run::Words { label, words, .. } => {
                    let bytes: Vec<u8> = words.concat();
                    out.push_str(&self.decode_word_bytes(label, &bytes, None).0);
                }
            }
        }
        out
    }

    /// The decoded payload of a run of encoded-words with one label.
    fn decode_word_bytes(&self, label: &[u8], bytes: &[u8], own: Option<&'static Encoding>) -> (String, Source) {
        let encoding = encoding_for_label(label);
        if let Some(enc) = encoding.filter(|e| !e.is_single_byte() && *e != UTF_8) {
            // A multi-byte label (GBK, Shift_JIS, ISO-2022-JP ...) is believed when it fits.
            if let Some(text) = enc.decode_without_bom_handling_and_without_replacement(bytes) {
                return (text.into_owned(), Source::Label);
            }
        }
        // UTF-8 under a single-byte label is far likelier than the Latin text that would
        // happen to form valid UTF-8 sequences.
        if let Ok(text) = std::str::from_utf8(bytes) {
            let source = if encoding == Some(UTF_8) || bytes.is_ascii() { Source::Label } else { Source::Utf8 };
            return (text.to_string(), source);
        }
        if let Some(enc) = encoding.filter(|e| e.is_single_byte() && !is_ascii_label(label)) {
            return (enc.decode_without_bom_handling(bytes).0.into_owned(), Source::Label);
        }
        if encoding.is_none() {
            // A label encoding_rs does not know may still be one mail-parser decodes.
            if let Some(decode) = mail_parser::decoders::charsets::map::charset_decoder(label) {
                let text = decode(bytes);
                if !text.contains('\u{FFFD}') {
                    return (text, Source::Label);
                }
            }
        }
        let (enc, source) = self.choose(bytes, own);
        (enc.decode_without_bom_handling(bytes).0.into_owned(), source)
    }

    /// The charset for bytes that are not UTF-8: `own`, then the mail's declared charsets,
    /// when one decodes them cleanly; then the mail-wide guess, then a guess for these bytes.
    fn choose(&self, bytes: &[u8], own: Option<&'static Encoding>) -> (&'static Encoding, Source) {
        if mostly_utf8(bytes) {
            return (UTF_8, Source::Utf8);
        }
        for enc in own.into_iter().chain(self.declared().iter().copied()) {
            if decodes_cleanly(enc, bytes) {
                return (enc, Source::Declared);
            }
        }
        if let Some(enc) =
            self.guess().filter(|e| e.decode_without_bom_handling_and_without_replacement(bytes).is_some())
        {
            return (enc, Source::Guessed);
        }
        let mut detector = chardetng::EncodingDetector::new();
        detector.feed(detector_sample(bytes), true);
        (detector.guess(self.tld(), false), Source::Guessed)
    }

    /// Charsets the message declares for its text: the top-level Content-Type, then the
    /// text and HTML body parts. 7-bit and ASCII labels say nothing about 8-bit bytes.
    fn declared(&self) -> &[&'static Encoding] {
        self.declared.get_or_init(|| {
            let m = self.message;
            let body = m.text_body.iter().chain(&m.html_body).filter_map(|&id| m.parts.get(id as usize));
            let mut out: Vec<&'static Encoding> = Vec::new();
            for part in m.parts.first().into_iter().chain(body).take(super::MAX_PARTS) {
                if let Some(enc) = part_charset(part) {
                    if !out.contains(&enc) {
                        out.push(enc);
                    }
                }
            }
            out
        })
    }

    /// One guess over every undeclared 8-bit header value of the mail (top-level headers,
    /// and the Content-Type and Content-Disposition of its parts, where file names live).
    fn guess(&self) -> Option<&'static Encoding> {
        *self.guess.get_or_init(|| {
            let mut detector = chardetng::EncodingDetector::new();
            let mut fed = 0;
            let m = self.message;
            let top = m.parts.first().into_iter().flat_map(|p| p.headers.iter());
            let part_headers = m.parts.iter().skip(1).take(super::MAX_PARTS).flat_map(|p| {
                p.headers.iter().filter(|h| matches!(h.name, HeaderName::ContentType | HeaderName::ContentDisposition))
            });
            for header in top.chain(part_headers) {
                let raw = self.raw_value(header);
                if raw.is_ascii() || std::str::from_utf8(raw).is_ok() {
                    continue;
                }
                if fed + raw.len() + 1 > MAX_DETECTOR_INPUT {
                    break;
                }
                detector.feed(raw, false);
                detector.feed(b" ", false);
                fed += raw.len() + 1;
            }
            detector.feed(b"", true);
            (fed > 0).then(|| detector.guess(self.tld(), false))
        })
    }

    /// The top-level domain of the From address, which tells the detector which scripts
    /// are likely (`.cn`, `.jp`, `.ru` ...).
    fn tld(&self) -> Option<&[u8]> {
        self.tld
            .get_or_init(|| {
                let address = self.message.from()?.iter().find_map(|a| a.address())?;
                let domain = address.rsplit_once('@')?.1.trim_end_matches(['.', '>', ' ']);
                let tld = domain.rsplit('.').next()?.to_ascii_lowercase();
                // chardetng panics on anything but a lower-case ASCII label without dots.
                let plausible = !tld.is_empty()
                    && tld.len() <= 63
                    && tld.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                plausible.then_some(tld)
            })
            .as_deref()
            .map(str::as_bytes)
    }
}

impl Source {
    fn describe(self) -> &'static str {
        match self {
            Source::Utf8 => "the bytes are UTF-8",
            Source::Label => "its label",
            Source::Declared => "the charset the mail declares",
            Source::Guessed => "guessed",
        }
    }

    fn describe_word(self) -> &'static str {
        match self {
            Source::Utf8 => "UTF-8 (the bytes are UTF-8)",
            Source::Label => "one text (a character was split between words)",
            Source::Declared => "the charset the mail declares",
            Source::Guessed => "a guessed charset",
        }
    }
}

/// The file name of an attachment, its Content-Type and Content-Disposition read with the
/// part's own charset, then the message's, when they hold raw 8-bit bytes or mislabelled
/// encoded-words; otherwise mail-parser's reading. `None` when the part names no file.
/// `charsets` is the message's, made once for all its parts (its guess reads the header
/// values of every part).
pub(super) fn file_name(charsets: &MailCharsets<'_, '_>, part: &MessagePart<'_>) -> Option<String> {
    let last = |name: HeaderName<'static>| part.headers.iter().rev().find(|h| h.name == name);
    let headers = [
        ("Content-Type", last(HeaderName::ContentType)),
        ("Content-Disposition", last(HeaderName::ContentDisposition)),
    ];
    let own = part_charset(part);
    let repaired = headers.map(|(_, h)| h.and_then(|h| charsets.repair(charsets.raw_value(h), own)));
    if repaired.iter().all(Option::is_none) {
        return part.attachment_name().map(str::to_string);
    }
    // Both headers go into the block, so the usual precedence holds (the disposition's
    // `filename` before the type's `name`).
    let mut block = String::new();
    for ((name, header), fixed) in headers.iter().zip(&repaired) {
        let value = match (fixed, header) {
            (Some(fixed), _) => Cow::Borrowed(fixed.value.as_str()),
            (None, Some(h)) => String::from_utf8_lossy(charsets.raw_value(h)),
            (None, None) => continue,
        };
        block.push_str(name);
        block.push_str(": ");
        block.push_str(&value);
        block.push_str("\r\n");
    }
    block.push_str("\r\n");
    let reparsed = MessageParser::default().parse_headers(block.as_bytes())?;
    reparsed.root_part().attachment_name().map(str::to_string).or_else(|| part.attachment_name().map(str::to_string))
}

/// The top-level headers whose decoded values later steps use, and that this module repairs.
pub(super) const DECODED_HEADERS: [(HeaderName<'static>, &str); 6] = [
    (HeaderName::Subject, "Subject"),
    (HeaderName::From, "From"),
    (HeaderName::Sender, "Sender"),
    (HeaderName::ReplyTo, "Reply-To"),
    (HeaderName::To, "To"),
    (HeaderName::Cc, "Cc"),
];

/// The repaired top-level headers of a message as a header block for mail-parser, and a
/// note per repaired header. `None` when every one reads right as it is.
pub(super) fn repaired_headers(charsets: &MailCharsets<'_, '_>) -> Option<(Vec<u8>, Vec<String>)> {
    let root = charsets.message.parts.first()?;
    let mut block = Vec::new();
    let mut notes = Vec::new();
    for (name, display) in DECODED_HEADERS {
        // mail-parser's accessors read the last header of a name; so does this.
        let Some(header) = root.headers.iter().rev().find(|h| h.name == name) else {
            continue;
        };
        if let Some(fixed) = charsets.repair(charsets.raw_value(header), None) {
            block.extend_from_slice(format!("{display}: {}\r\n", fixed.value).as_bytes());
            notes.push(format!("{display}: {}", fixed.note));
        }
    }
    if block.is_empty() {
        return None;
    }
    block.extend_from_slice(b"\r\n");
    Some((block, notes))
}

/// The value of a top-level header: from the repaired block when it holds the header,
/// else the message's own.
pub(super) fn header_value<'a>(
    repaired: Option<&'a Message<'a>>,
    message: &'a Message<'_>,
    name: HeaderName<'static>,
) -> Option<&'a HeaderValue<'a>> {
    match repaired.and_then(|r| r.header(name.clone())) {
        Some(value) => Some(value),
        None => message.header(name),
    }
}

/// The encoding a MIME charset label names. encoding_rs knows the WHATWG labels; mail also
/// uses Microsoft code-page names. Labels that map to the WHATWG "replacement" encoding
/// (ISO-2022-KR, HZ) are treated as unknown.
pub(super) fn encoding_for_label(label: &[u8]) -> Option<&'static Encoding> {
    let label = label.trim_ascii();
    let label = label.strip_prefix(b"\"").and_then(|l| l.strip_suffix(b"\"")).unwrap_or(label);
    if let Some(enc) = Encoding::for_label(label) {
        return (enc != encoding_rs::REPLACEMENT).then_some(enc);
    }
    let lower = label.to_ascii_lowercase();
    Some(match lower.as_slice() {
        b"cp932" | b"ms932" | b"ms_kanji" | b"x-ms-cp932" | b"shift-jis" => encoding_rs::SHIFT_JIS,
        b"cp936" | b"ms936" | b"windows-936" | b"gb2312-80" => encoding_rs::GBK,
        b"cp949" | b"ms949" | b"uhc" | b"x-windows-949" | b"ks_c_5601" | b"ksc5601" => encoding_rs::EUC_KR,
        b"cp950" | b"ms950" | b"x-windows-950" | b"big5hkscs" => encoding_rs::BIG5,
        b"utf-8-sig" => UTF_8,
        _ => return None,
    })
}

/// Labels that promise 7-bit text; 8-bit bytes under them carry no charset information.
fn is_ascii_label(label: &[u8]) -> bool {
    let label = label.trim_ascii().to_ascii_lowercase();
    matches!(
        label.as_slice(),
        b"us-ascii" | b"ascii" | b"us" | b"ansi_x3.4-1968" | b"iso646-us" | b"iso-ir-6" | b"csascii" | b"cp367"
    )
}

/// The part's Content-Type charset, when it can say anything about 8-bit bytes.
fn part_charset(part: &MessagePart<'_>) -> Option<&'static Encoding> {
    let label = part.content_type()?.attribute("charset")?;
    if is_ascii_label(label.as_bytes()) {
        return None;
    }
    encoding_for_label(label.as_bytes()).filter(|e| e.is_ascii_compatible() && *e != UTF_8)
}

/// A declared charset fits when it decodes without errors and, for a single-byte charset
/// (which decodes any byte), without C1 control characters: those mean the bytes were
/// written in another charset (Shift_JIS and GBK lead bytes fall in 0x80-0x9F).
/// What the detector is shown of long text: its first [`MAX_DETECTOR_INPUT`] bytes, ended
/// after white space so that no character is cut (the detector counts a cut one as an
/// error; no multi-byte charset has white space inside a character, while Shift_JIS, Big5
/// and GBK have ASCII letters and GB18030 digits there). It guesses as well from them,
/// and reads every byte at some 70 ns.
fn detector_sample(bytes: &[u8]) -> &[u8] {
    if bytes.len() <= MAX_DETECTOR_INPUT {
        return bytes;
    }
    let window = &bytes[..MAX_DETECTOR_INPUT];
    window.iter().rposition(u8::is_ascii_whitespace).map_or(window, |end| &window[..=end])
}

fn decodes_cleanly(enc: &'static Encoding, bytes: &[u8]) -> bool {
    match enc.decode_without_bom_handling_and_without_replacement(bytes) {
        Some(text) => !enc.is_single_byte() || !text.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)),
        None => false,
    }
}

/// UTF-8 with a cut-off last character or a stray byte (a name truncated to a byte
/// length), which a legacy charset would turn into mojibake throughout: many valid
/// multi-byte sequences and few broken ones. Legacy double-byte text rarely forms valid
/// UTF-8 sequences, so it does not pass.
fn mostly_utf8(bytes: &[u8]) -> bool {
    let (mut valid, mut broken) = (0usize, 0usize);
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                valid += s.chars().filter(|c| !c.is_ascii()).count();
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // `good` is valid UTF-8 by the error's own account.
                valid += std::str::from_utf8(good).map_or(0, |s| s.chars().filter(|c| !c.is_ascii()).count());
                broken += 1;
                match e.error_len() {
                    Some(n) => rest = &bad[n..],
                    None => break,
                }
            }
        }
    }
    valid >= 4 * broken.max(1)
}

/// Whether mail-parser, which believes the label, reads this word's bytes right.
fn reads_right(label: &[u8], bytes: &[u8]) -> bool {
    if bytes.is_ascii() {
        return true;
    }
    match encoding_for_label(label) {
        Some(enc) if enc == UTF_8 => std::str::from_utf8(bytes).is_ok(),
        Some(_) if is_ascii_label(label) => false,
        Some(enc) if enc.is_single_byte() => std::str::from_utf8(bytes).is_err(),
        Some(enc) => enc.decode_without_bom_handling_and_without_replacement(bytes).is_some(),
        None => match mail_parser::decoders::charsets::map::charset_decoder(label) {
            Some(decode) => !decode(bytes).contains('\u{FFFD}'),
            None => std::str::from_utf8(bytes).is_ok(),
        },
    }
}

enum Piece<'r> {
    Text(&'r [u8]),
    /// An encoded-word: its label, decoded bytes, and where it sits in the value.
    Word {
        label: &'r [u8],
        bytes: Vec<u8>,
        span: std::ops::Range<usize>,
    },
}

/// A header value cut into raw text and encoded-words. `=` and `?` are never trail bytes of
/// GBK, Big5, Shift_JIS or EUC-KR, so looking for `=?` in raw legacy bytes is safe.
fn split(raw: &[u8]) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let (mut text_start, mut i) = (0, 0);
    while let Some(offset) = raw[i..].windows(2).position(|w| w == b"=?") {
        let at = i + offset;
        match encoded_word(&raw[at..]) {
            Some((label, bytes, len)) => {
                if at > text_start {
                    out.push(Piece::Text(&raw[text_start..at]));
                }
                out.push(Piece::Word { label, bytes, span: at..at + len });
                i = at + len;
                text_start = i;
            }
            None => i = at + 1,
        }
    }
    if text_start < raw.len() {
        out.push(Piece::Text(&raw[text_start..]));
    }
    out
}

/// `=?label?B|Q?data?=` at the start of `s`: the label (without an RFC 2231 language), the
/// decoded bytes and the length of the word.
fn encoded_word(s: &[u8]) -> Option<(&[u8], Vec<u8>, usize)> {
    let rest = s.strip_prefix(b"=?")?;
    let label_end = rest.iter().take(MAX_LABEL + 1).position(|&b| b == b'?')?;
    let label_full = &rest[..label_end];
    if label_full.is_empty() || !label_full.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    let label = label_full.split(|&b| b == b'*').next().unwrap_or_default();
    let kind = *rest.get(label_end + 1)?;
    if rest.get(label_end + 2) != Some(&b'?') {
        return None;
    }
    let data_start = label_end + 3;
    let data_rest = rest.get(data_start..)?;
    let mut data_len = None;
    for (j, &b) in data_rest.iter().enumerate().take(MAX_WORD_DATA) {
        if b == b'?' && data_rest.get(j + 1) == Some(&b'=') {
            data_len = Some(j);
            break;
        }
        if b.is_ascii_whitespace() || b.is_ascii_control() {
            return None;
        }
    }
    let data = &data_rest[..data_len?];
    let bytes = match kind {
        b'B' | b'b' => WORD_BASE64.decode(data).ok()?,
        b'Q' | b'q' => q_decode(data),
        _ => return None,
    };
    Some((label, bytes, 2 + data_start + data.len() + 2))
}

/// RFC 2047 "Q": `_` is a space, `=XX` a byte, anything else itself.
fn q_decode(data: &[u8]) -> Vec<u8> {
    let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'_' => out.push(b' '),
            b'=' => {
                if let (Some(h), Some(l)) = (hex(data.get(i + 1)), hex(data.get(i + 2))) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                out.push(b'=');
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

enum Run<'p, 'r> {
    Text(&'r [u8]),
    /// Encoded-words with one label, separated only by white space (which RFC 2047 drops);
    /// a character may be split between them, so their bytes are decoded together. `raw` is
    /// the run as written, white space included.
    Words {
        label: &'r [u8],
        words: Vec<&'p [u8]>,
        raw: &'r [u8],
    },
}

fn runs<'p, 'r>(value: &'r [u8], pieces: &'p [Piece<'r>]) -> Vec<Run<'p, 'r>> {
    let mut out: Vec<Run<'p, 'r>> = Vec::new();
    let mut i = 0;
    while let Some(piece) = pieces.get(i) {
        let (label, bytes, span) = match piece {
            Piece::Text(t) => {
                out.push(Run::Text(t));
                i += 1;
                continue;
            }
            Piece::Word { label, bytes, span } => (label, bytes, span),
        };
        let mut words = vec![bytes.as_slice()];
        let mut end = span.end;
        let mut j = i + 1;
        // Extend over "white space, word with the same label" (or a directly adjacent word).
        loop {
            let space = match pieces.get(j) {
                Some(Piece::Text(t)) if t.iter().all(u8::is_ascii_whitespace) => 1,
                Some(Piece::Word { .. }) => 0,
                _ => break,
            };
            match pieces.get(j + space) {
                Some(Piece::Word { label: next, bytes, span }) if next.eq_ignore_ascii_case(label) => {
                    words.push(bytes);
                    end = span.end;
                    j += space + 1;
                }
                _ => break,
            }
        }
        out.push(Run::Words { label, words, raw: &value[span.start..end] });
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_message() -> Message<'static> {
        MessageParser::default().parse_headers(b"X: y\r\n\r\n".as_slice()).expect("parses")
    }

    #[test]
    fn ascii_and_utf8_values_without_encoded_words_are_not_touched() {
        let message = no_message();
        let charsets = MailCharsets::new(&message);
        assert!(charsets.repair(b"Plain subject", None).is_none());
        assert!(charsets.repair("Grüße, 你好".as_bytes(), None).is_none());
        assert!(charsets.repair(b"=?utf-8?Q?Gr=C3=BC=C3=9Fe?=", None).is_none(), "a right label is left alone");
        // Nothing was worked out for them either.
        assert!(charsets.declared.get().is_none() && charsets.guess.get().is_none());
    }

    #[test]
    fn encoded_words_are_found_between_raw_bytes() {
        let raw = b"a \xb7\xa2=?gb2312?B?zsrM4g==?= =?x?q?a_b=3F?= =?broken?Z?x?= =?l*en?Q?=41?=";
        let pieces = split(raw);
        let words: Vec<(&[u8], &[u8])> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Word { label, bytes, .. } => Some((*label, bytes.as_slice())),
                Piece::Text(_) => None,
            })
            .collect();
        assert_eq!(words, [(&b"gb2312"[..], &b"\xce\xca\xcc\xe2"[..]), (b"x", b"a b?"), (b"l", b"A")]);
        let runs = runs(raw, &pieces);
        assert_eq!(runs.len(), 6, "text, gb2312 word, text, x word, broken text, l word");
    }

    #[test]
    fn raw_iso_2022_jp_is_decoded() {
        let message = no_message();
        let charsets = MailCharsets::new(&message);
        // "請求書" in ISO-2022-JP, straight in the header.
        let fixed = charsets.repair(b"Re: \x1b$B@A5a=q\x1b(B", None).expect("repaired");
        assert_eq!(fixed.value, "Re: 請求書");
        assert!(charsets.repair(b"no escape \x1b here", None).is_none(), "a stray ESC that is not ISO-2022-JP stays");
    }

    #[test]
    fn utf8_cut_inside_a_character_stays_utf8() {
        // A Cyrillic name cut after the first byte of its last character.
        let name = "Картинка с очень длинным именем т".as_bytes();
        let cut = &name[..name.len() - 1];
        assert!(mostly_utf8(cut));
        let message = no_message();
        let fixed = MailCharsets::new(&message).repair(cut, None).expect("repaired");
        assert_eq!(fixed.value, "Картинка с очень длинным именем \u{FFFD}");
        // Legacy double-byte text is not mistaken for it.
        assert!(!mostly_utf8(b"\xb9\xd8\xd3\xda\xb7\xa2\xc6\xb1\xb5\xc4\xce\xca\xcc\xe2"));
        assert!(!mostly_utf8(b"\xd5\xc5\xce\xb0"));
    }

    #[test]
    fn q_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(q_decode(b"a_b=3D=zz=4"), b"a b==zz=4");
    }

    #[test]
    fn mail_charset_labels_and_code_page_names_are_known() {
        assert_eq!(encoding_for_label(b"GB2312"), Some(encoding_rs::GBK));
        assert_eq!(encoding_for_label(b"cp936"), Some(encoding_rs::GBK));
        assert_eq!(encoding_for_label(b"\"ks_c_5601-1987\""), Some(encoding_rs::EUC_KR));
        assert_eq!(encoding_for_label(b"cp932"), Some(encoding_rs::SHIFT_JIS));
        assert_eq!(encoding_for_label(b"iso-2022-kr"), None, "the WHATWG replacement encoding decodes nothing");
        assert_eq!(encoding_for_label(b"x-unknown"), None);
    }

    #[test]
    fn long_text_is_guessed_from_its_start_without_cutting_a_character() {
        let message = no_message();
        let charsets = MailCharsets::new(&message);
        // Undeclared Shift_JIS, far longer than what the detector is shown.
        let (line, _, _) = encoding_rs::SHIFT_JIS.encode("サポートチームへ、ログイン画面が表示されません。\r\n");
        let bytes = line.repeat(MAX_DETECTOR_INPUT / line.len() * 3);
        let sample = detector_sample(&bytes);
        assert!(sample.len() <= MAX_DETECTOR_INPUT && sample.len() > MAX_DETECTOR_INPUT - line.len());
        assert!(sample.ends_with(b"\r\n"), "the sample ends after white space");
        assert_eq!(charsets.choose(&bytes, None), (encoding_rs::SHIFT_JIS, Source::Guessed));
        // Short text is shown whole.
        assert_eq!(detector_sample(&line), &line[..]);
    }

    #[test]
    fn a_single_byte_charset_does_not_fit_bytes_that_give_c1_controls() {
        // Shift_JIS "ツール": its lead bytes are C1 controls in ISO-8859-2.
        assert!(!decodes_cleanly(encoding_rs::ISO_8859_2, b"\x83\x63\x81\x5b\x83\x8b"));
        assert!(decodes_cleanly(encoding_rs::SHIFT_JIS, b"\x83\x63\x81\x5b\x83\x8b"));
        assert!(decodes_cleanly(encoding_rs::ISO_8859_2, b"\xa3ukasz"));
    }

    #[test]
    fn hostile_values_are_bounded() {
        let message = no_message();
        let charsets = MailCharsets::new(&message);
        // Many starts of encoded-words that never end: each look is bounded.
        let raw = "=?a?q?x".repeat(2_300).into_bytes();
        let started = std::time::Instant::now();
        let _ = charsets.repair(&raw, None);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
        // Longer than the bound: left as mail-parser reads it.
        let mut raw = vec![0xb7u8; MAX_VALUE + 1];
        raw[0] = b'x';
        assert!(charsets.repair(&raw, None).is_none());
    }
}
