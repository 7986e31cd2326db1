//! Attachments: every part that is not the readable body, with its exact decoded bytes
//! and a safe display name; attached messages are parsed in turn (bounded depth).
//!
//! Nothing a sender attached may vanish from a case: unnamed parts are named from their
//! type (`attachment-2.pdf`), body parts the readable text does not show are kept as files,
//! and the files packed inside `winmail.dat` (TNEF), AppleSingle files and uuencoded blocks
//! in the text are unpacked next to their container, which is kept too.

use std::collections::{BTreeSet, HashMap};

use mail_parser::{Encoding, Message, MessageParser, MessagePart, MimeHeaders, PartType};

use super::{
    applefile, content_type_of, convert, one_line, tnef, uuencode, Attachment, Disposition, InboundMail,
    MAX_ATTACHED_MESSAGE_DEPTH, MAX_PARTS,
};

/// One file on its way to becoming an attachment, before it is named.
struct Found {
    /// The MIME part it is (`None` for a file unpacked from a container).
    part: Option<usize>,
    raw_name: Option<String>,
    content_type: String,
    disposition: Disposition,
    content_id: Option<String>,
    data: Vec<u8>,
}

pub(super) fn collect_attachments(message: &Message<'_>, mail: &mut InboundMail, depth: usize) {
    let mut found = Vec::new();
    let charsets = super::charset::MailCharsets::new(message);
    for id in kept_part_ids(message, mail) {
        let Some(part) = message.parts.get(id) else {
            continue;
        };
        let content_type = content_type_of(part);
        let mut disposition = disposition_of(part);
        let data: Vec<u8> = match &part.body {
            PartType::Message(nested) => {
                disposition = Disposition::Message;
                if depth < MAX_ATTACHED_MESSAGE_DEPTH {
                    mail.attached_messages.push(convert(nested, depth + 1));
                } else {
                    mail.problems.push("attached messages nested too deeply; inner ones kept as files only".into());
                }
                nested.raw_message().to_vec()
            }
            PartType::Text(_) | PartType::Html(_) => raw_decoded(message, part),
            PartType::Binary(_) | PartType::InlineBinary(_) if left_encoded(part) => raw_decoded(message, part),
            PartType::Binary(b) | PartType::InlineBinary(b) => b.to_vec(),
            PartType::Multipart(_) => continue,
        };
        let content_type = content_type.unwrap_or_else(|| match disposition {
            Disposition::Message => "message/rfc822".into(),
            _ if matches!(part.body, PartType::Text(_)) => "text/plain".into(),
            _ if matches!(part.body, PartType::Html(_)) => "text/html".into(),
            _ => "application/octet-stream".into(),
        });
        let raw_name = super::charset::file_name(&charsets, part).or_else(|| match &part.body {
            PartType::Message(nested) => super::subject_of(nested).map(|s| format!("{s}.eml")),
            _ => None,
        });
        // mail-parser decodes RFC 2231 continuations piece by piece, which garbles a
        // multi-byte character split across pieces; reassemble those names from the raw header.
        let raw_name = continued_filename(message, part).or(raw_name);
        let raw_name = raw_name.or_else(|| typeless_disposition_name(message, part));
        // An attached message that mail-parser left unparsed (nested too deeply, or damaged)
        // is still a message: stored as an `.eml`, named by its subject.
        let is_message = matches!(content_type.as_str(), "message/rfc822" | "message/global");
        if is_message {
            disposition = Disposition::Message;
        }
        let raw_name = raw_name.or_else(|| is_message.then(|| subject_eml(&data)).flatten());
        found.push(Found {
            part: Some(id),
            raw_name,
            content_type,
            disposition,
            content_id: part.content_id().map(|s| s.trim_matches(['<', '>']).to_string()),
            data,
        });
    }
    name_apple_double_forks(message, &mut found);
    for f in found {
        let unpacked = unpack_container(&f, mail);
        let f = Found { raw_name: unpacked.container_name.or(f.raw_name), ..f };
        if !push(mail, f) {
            return;
        }
        for inner in unpacked.files {
            if !push(mail, inner) {
                return;
            }
        }
    }
    if !mail.text_from_html {
        let (files, text) = uuencode::extract(&mail.text, MAX_PARTS.saturating_sub(mail.attachments.len()));
        if let Some(text) = text {
            mail.text = text;
        }
        for file in files {
            let content_type = type_for_name(&file.name).to_string();
            let file = Found {
                part: None,
                raw_name: Some(file.name),
                content_type,
                disposition: Disposition::Attachment,
                content_id: None,
                data: file.data,
            };
            if !push(mail, file) {
                return;
            }
        }
    }
}

/// Adds an attachment, named now that its position is known; `false` (and a problem noted
/// once) when the mail already holds [`MAX_PARTS`] of them.
fn push(mail: &mut InboundMail, f: Found) -> bool {
    if mail.attachments.len() >= MAX_PARTS {
        mail.problems.push(format!("more than {MAX_PARTS} attachments; the rest are kept only in the raw mail"));
        return false;
    }
    let filename = safe_filename(f.raw_name.as_deref(), &f.content_type, mail.attachments.len() + 1);
    mail.attachments.push(Attachment {
        filename,
        content_type: f.content_type,
        disposition: f.disposition,
        content_id: f.content_id,
        sha256: crate::digest::sha256_hex(&f.data),
        data: f.data,
    });
    true
}

/// The parts kept as attachments, in the mail's order (at most [`MAX_PARTS`]): those
/// mail-parser counts as attachments, and body parts that would otherwise vanish or hide a
/// file: HTML parts when the readable text is made of the plain parts (an HTML part next to
/// a plain one is not an alternative of it), body parts that came with a file name (shown
/// in the text, and still the file the sender attached), and both halves of every
/// `multipart/appledouble`.
fn kept_part_ids(message: &Message<'_>, mail: &InboundMail) -> Vec<usize> {
    let mut ids: BTreeSet<usize> = message.attachments.iter().take(MAX_PARTS).map(|&id| id as usize).collect();
    for &id in message.text_body.iter().take(MAX_PARTS) {
        let Some(part) = message.parts.get(id as usize) else {
            continue;
        };
        let keep = match part.body {
            PartType::Html(_) => !mail.text_from_html || part.attachment_name().is_some(),
            PartType::Text(_) => part.attachment_name().is_some(),
            _ => false,
        };
        if keep {
            ids.insert(id as usize);
        }
    }
    for part in message.parts.iter().take(MAX_PARTS) {
        if let PartType::Multipart(children) = &part.body {
            if content_type_of(part).as_deref() == Some("multipart/appledouble") {
                ids.extend(children.iter().map(|&id| id as usize));
            }
        }
    }
    ids.into_iter().take(MAX_PARTS).collect()
}

/// How the sender presented a part. No disposition, or one nobody knows: a part with a
/// Content-ID is one the HTML shows in place (an inline image), anything else a file.
fn disposition_of(part: &MessagePart<'_>) -> Disposition {
    let declared = part.content_disposition().map(|d| d.ctype().to_ascii_lowercase());
    match declared.as_deref() {
        Some("attachment") => Disposition::Attachment,
        Some("inline") => Disposition::Inline,
        _ if part.content_id().is_some() => Disposition::Inline,
        _ => Disposition::Attachment,
    }
}

/// The file name in a `Content-Disposition` without a type (`filename="a.pdf"` alone or
/// after an empty type), which mail-parser reads as the type itself or not at all.
fn typeless_disposition_name(message: &Message<'_>, part: &MessagePart<'_>) -> Option<String> {
    let header = part.headers.iter().find(|h| h.name.as_str().eq_ignore_ascii_case("content-disposition"))?;
    let value = message.raw_message().get(header.offset_start as usize..header.offset_end as usize)?;
    let value = String::from_utf8_lossy(value);
    split_params(&value).into_iter().find_map(|item| {
        let (key, val) = item.split_once('=')?;
        key.trim().eq_ignore_ascii_case("filename").then(|| val.trim().trim_matches('"').to_string())
    })
}

/// `Subject.eml` for an attached message given as bytes.
fn subject_eml(data: &[u8]) -> Option<String> {
    let headers = MessageParser::default().parse_headers(data)?;
    headers.subject().map(|s| format!("{s}.eml"))
}

/// Names the halves of each `multipart/appledouble` (RFC 1740): the data fork is the file
/// people want, so it gets the file's name (its own, the resource fork's, or the real name
/// in the AppleDouble header); the `application/applefile` resource fork is named after
/// it with `.applefile`, so the two are not taken for one another.
fn name_apple_double_forks(message: &Message<'_>, found: &mut [Found]) {
    let mut parent = HashMap::new();
    for (id, part) in message.parts.iter().enumerate().take(MAX_PARTS) {
        if let PartType::Multipart(children) = &part.body {
            if content_type_of(part).as_deref() == Some("multipart/appledouble") {
                parent.extend(children.iter().map(|&child| (child as usize, id)));
            }
        }
    }
    // Container id -> (resource fork, data fork), as indexes into `found`.
    let mut pairs: HashMap<usize, (Option<usize>, Option<usize>)> = HashMap::new();
    for (i, f) in found.iter().enumerate() {
        if let Some(&container) = f.part.and_then(|id| parent.get(&id)) {
            let pair = pairs.entry(container).or_default();
            if f.content_type == "application/applefile" {
                pair.0.get_or_insert(i);
            } else {
                pair.1.get_or_insert(i);
            }
        }
    }
    for (resource, data) in pairs.into_values() {
        let base = data
            .and_then(|d| found[d].raw_name.clone())
            .or_else(|| resource.and_then(|r| found[r].raw_name.clone()))
            .or_else(|| resource.and_then(|r| applefile::real_name(&found[r].data)));
        if let Some(d) = data {
            found[d].raw_name = base.clone();
        }
        if let (Some(r), Some(base)) = (resource, base) {
            found[r].raw_name = Some(format!("{base}.applefile"));
        }
    }
}

/// What a container part holds: the files inside a TNEF stream or an AppleSingle file,
/// and a better name for the container itself when it has one.
#[derive(Default)]
struct Unpacked {
    container_name: Option<String>,
    files: Vec<Found>,
}

fn unpack_container(f: &Found, mail: &mut InboundMail) -> Unpacked {
    let mut out = Unpacked::default();
    let named = |n: &str| f.raw_name.as_deref().is_some_and(|r| r.trim().eq_ignore_ascii_case(n));
    let tnef_type = matches!(f.content_type.as_str(), "application/ms-tnef" | "application/vnd.ms-tnef");
    if (tnef_type || named("winmail.dat") || named("win.dat")) && tnef::is_tnef(&f.data) {
        let room = MAX_PARTS.saturating_sub(mail.attachments.len() + 1);
        let unpacked = tnef::unpack(&f.data, room);
        mail.problems.extend(unpacked.problems);
        for file in unpacked.files {
            let content_type = file
                .content_type
                .as_deref()
                .and_then(clean_content_type)
                .filter(|t| t != "application/octet-stream")
                .unwrap_or_else(|| type_for_name(file.name.as_deref().unwrap_or_default()).to_string());
            let disposition = if file.content_id.is_some() { Disposition::Inline } else { Disposition::Attachment };
            out.files.push(Found {
                part: None,
                raw_name: file.name,
                content_type,
                disposition,
                content_id: file.content_id.map(|c| c.trim_matches(['<', '>']).to_string()),
                data: file.data,
            });
        }
    } else if f.content_type == "application/applefile" {
        if let Some(fork) = applefile::data_fork(&f.data) {
            let base = f.raw_name.clone().or_else(|| applefile::real_name(&f.data));
            out.container_name = base.as_ref().map(|b| format!("{b}.applefile"));
            let content_type = type_for_name(base.as_deref().unwrap_or_default()).to_string();
            out.files.push(Found {
                part: None,
                raw_name: base,
                content_type,
                disposition: f.disposition,
                content_id: None,
                data: fork.to_vec(),
            });
        }
    }
    out
}

/// A content type from inside a container, cut to a sane lower-case `type/subtype` token.
fn clean_content_type(value: &str) -> Option<String> {
    let value = value.trim().to_ascii_lowercase();
    let clean: String = value.chars().filter(|c| c.is_ascii_alphanumeric() || "/-+.".contains(*c)).take(100).collect();
    Some(clean).filter(|c| c.split_once('/').is_some_and(|(t, s)| !t.is_empty() && !s.is_empty()))
}

/// The file name of a part whose `filename*N*`/`name*N*` parameters (RFC 2231 section 3/4)
/// are split over several pieces: the pieces' bytes are joined first, then decoded with the
/// charset named in the first piece. `None` when the part has no such continuation.
fn continued_filename(message: &Message<'_>, part: &MessagePart<'_>) -> Option<String> {
    let raw = message.raw_message();
    for header in &part.headers {
        let name = header.name.as_str();
        let param = if name.eq_ignore_ascii_case("content-disposition") {
            "filename"
        } else if name.eq_ignore_ascii_case("content-type") {
            "name"
        } else {
            continue;
        };
        let value = raw.get(header.offset_start as usize..header.offset_end as usize)?;
        if let Some(name) = join_rfc2231_pieces(&String::from_utf8_lossy(value), param) {
            return Some(name);
        }
    }
    None
}

fn join_rfc2231_pieces(value: &str, param: &str) -> Option<String> {
    let mut pieces: Vec<(u32, bool, String)> = Vec::new();
    for item in split_params(value) {
        let Some((key, val)) = item.split_once('=') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let Some(rest) = key.strip_prefix(param).and_then(|r| r.strip_prefix('*')) else {
            continue;
        };
        let (number, encoded) = match rest.strip_suffix('*') {
            Some(n) => (n, true),
            None => (rest, false),
        };
        let Ok(number) = number.parse::<u32>() else {
            continue;
        };
        pieces.push((number, encoded, val.trim().trim_matches('"').to_string()));
    }
    if pieces.len() < 2 {
        return None;
    }
    pieces.sort_by_key(|p| p.0);
    let mut charset = String::from("us-ascii");
    let mut bytes = Vec::new();
    for (i, (_, encoded, val)) in pieces.iter().enumerate() {
        let mut val = val.as_str();
        if i == 0 && *encoded {
            // charset'language'value
            let mut parts = val.splitn(3, '\'');
            if let (Some(cs), Some(_lang), Some(v)) = (parts.next(), parts.next(), parts.next()) {
                charset = cs.to_string();
                val = v;
            }
        }
        if *encoded {
            bytes.extend(percent_decode(val));
        } else {
            bytes.extend_from_slice(val.as_bytes());
        }
    }
    let decode = mail_parser::decoders::charsets::map::charset_decoder(charset.as_bytes());
    Some(match decode {
        Some(f) => f(&bytes),
        None => String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// Splits `a=1; b="x;y"; c=2` at semicolons outside quotes.
fn split_params(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            // Byte-wise: the text may hold non-ASCII right after a '%'.
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// A text part's bytes with only the transfer encoding removed, so that a text file
/// attachment is stored exactly as the sender's program wrote it (same checksum); also
/// any part whose encoding mail-parser left on (see [`left_encoded`]).
fn raw_decoded(message: &Message<'_>, part: &MessagePart<'_>) -> Vec<u8> {
    let raw = message.raw_message();
    let (start, end) = (part.offset_body as usize, part.offset_end as usize);
    let Some(body) = raw.get(start..end.min(raw.len())) else {
        return part.contents().to_vec();
    };
    let encoding = if left_encoded(part) { declared_encoding(part).unwrap_or(Encoding::None) } else { part.encoding };
    let decoded = match encoding {
        Encoding::Base64 => mail_parser::decoders::base64::base64_decode(body),
        Encoding::QuotedPrintable => mail_parser::decoders::quoted_printable::quoted_printable_decode(body),
        Encoding::None => Some(body.to_vec()),
    };
    decoded.unwrap_or_else(|| part.contents().to_vec())
}

/// Whether mail-parser left a part's transfer encoding on: it does so for the last part of
/// a multipart whose closing boundary never comes (a mail cut short), whose file would
/// otherwise be stored as base64 text.
fn left_encoded(part: &MessagePart<'_>) -> bool {
    part.encoding == Encoding::None && declared_encoding(part).is_some()
}

/// The transfer encoding a part's header names, when it is one that must be removed.
fn declared_encoding(part: &MessagePart<'_>) -> Option<Encoding> {
    let declared = part.content_transfer_encoding()?.trim();
    if declared.eq_ignore_ascii_case("base64") {
        Some(Encoding::Base64)
    } else if declared.eq_ignore_ascii_case("quoted-printable") {
        Some(Encoding::QuotedPrintable)
    } else {
        None
    }
}

/// Longest stored file name, in bytes.
const MAX_FILENAME: usize = 200;

/// A file name safe to show and to offer for download: the last path component only, no
/// control or bidirectional-override characters, not hidden, bounded; an unnamed part gets
/// `attachment-N` (N its position among the mail's attachments) with an extension from its
/// content type.
pub fn safe_filename(raw: Option<&str>, content_type: &str, index: usize) -> String {
    let is_bidi = |c: char| matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    let cleaned: String = raw
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .filter(|c| !is_bidi(*c))
        .collect();
    let cleaned = one_line(&cleaned);
    let cleaned = cleaned.trim_start_matches(['.', ' ']).trim_end_matches(['.', ' ']);
    if cleaned.is_empty() {
        return format!("attachment-{index}.{}", extension_for(content_type));
    }
    if cleaned.len() <= MAX_FILENAME {
        return cleaned.to_string();
    }
    // Keep the extension: "very long name….pdf".
    let (stem, ext) = match cleaned.rsplit_once('.') {
        Some((s, e)) if e.len() <= 10 && !s.is_empty() => (s, format!(".{e}")),
        _ => (cleaned, String::new()),
    };
    let mut cut = MAX_FILENAME - ext.len() - '…'.len_utf8();
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…{ext}", &stem[..cut])
}

/// Content types and the extension a file of that type usually has (the first entry of an
/// extension is the type guessed from it). Types not listed: `.txt` for text, else `.bin`.
const TYPES: &[(&str, &str)] = &[
    // Text and data.
    ("text/plain", "txt"),
    ("text/html", "html"),
    ("text/csv", "csv"),
    ("text/comma-separated-values", "csv"),
    ("application/csv", "csv"),
    ("text/tab-separated-values", "tsv"),
    ("text/calendar", "ics"),
    ("application/ics", "ics"),
    ("text/x-vcalendar", "vcs"),
    ("text/vcard", "vcf"),
    ("text/x-vcard", "vcf"),
    ("text/directory", "vcf"),
    ("application/json", "json"),
    ("text/json", "json"),
    ("application/xml", "xml"),
    ("text/xml", "xml"),
    ("text/markdown", "md"),
    ("text/x-markdown", "md"),
    ("application/rtf", "rtf"),
    ("text/rtf", "rtf"),
    ("text/richtext", "rtx"),
    ("text/css", "css"),
    ("text/javascript", "js"),
    ("application/javascript", "js"),
    ("application/x-yaml", "yaml"),
    ("text/yaml", "yaml"),
    ("application/yaml", "yaml"),
    ("application/sql", "sql"),
    ("text/x-diff", "diff"),
    ("text/x-patch", "patch"),
    ("text/x-log", "log"),
    ("application/x-sh", "sh"),
    ("application/x-shellscript", "sh"),
    ("application/x-msdos-program", "bat"),
    // Mail: attached messages, and the reports and headers that bounces carry.
    ("message/rfc822", "eml"),
    ("message/global", "eml"),
    ("message/partial", "eml"),
    ("message/delivery-status", "txt"),
    ("message/global-delivery-status", "txt"),
    ("message/disposition-notification", "txt"),
    ("message/global-disposition-notification", "txt"),
    ("message/feedback-report", "txt"),
    ("message/global-headers", "txt"),
    ("text/rfc822-headers", "txt"),
    ("application/vnd.ms-outlook", "msg"),
    ("application/ms-tnef", "dat"),
    ("application/vnd.ms-tnef", "dat"),
    ("application/applefile", "applefile"),
    ("application/mbox", "mbox"),
    // Signatures and keys.
    ("application/pkcs7-signature", "p7s"),
    ("application/x-pkcs7-signature", "p7s"),
    ("application/pkcs7-mime", "p7m"),
    ("application/x-pkcs7-mime", "p7m"),
    ("application/pgp-signature", "asc"),
    ("application/pgp-encrypted", "pgp"),
    ("application/pgp-keys", "asc"),
    ("application/pkix-cert", "cer"),
    ("application/x-x509-ca-cert", "crt"),
    ("application/x-pem-file", "pem"),
    ("application/pkcs12", "p12"),
    ("application/x-pkcs12", "p12"),
    // Documents.
    ("application/pdf", "pdf"),
    ("application/x-pdf", "pdf"),
    ("application/postscript", "ps"),
    ("application/msword", "doc"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx"),
    ("application/vnd.ms-word.document.macroenabled.12", "docm"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.template", "dotx"),
    ("application/vnd.ms-excel", "xls"),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
    ("application/vnd.ms-excel.sheet.macroenabled.12", "xlsm"),
    ("application/vnd.ms-excel.sheet.binary.macroenabled.12", "xlsb"),
    ("application/vnd.ms-powerpoint", "ppt"),
    ("application/vnd.openxmlformats-officedocument.presentationml.presentation", "pptx"),
    ("application/vnd.ms-powerpoint.presentation.macroenabled.12", "pptm"),
    ("application/vnd.openxmlformats-officedocument.presentationml.slideshow", "ppsx"),
    ("application/vnd.visio", "vsd"),
    ("application/vnd.ms-visio.drawing", "vsdx"),
    ("application/vnd.ms-project", "mpp"),
    ("application/onenote", "one"),
    ("application/vnd.oasis.opendocument.text", "odt"),
    ("application/vnd.oasis.opendocument.spreadsheet", "ods"),
    ("application/vnd.oasis.opendocument.presentation", "odp"),
    ("application/vnd.oasis.opendocument.graphics", "odg"),
    ("application/vnd.apple.pages", "pages"),
    ("application/vnd.apple.numbers", "numbers"),
    ("application/vnd.apple.keynote", "key"),
    ("application/epub+zip", "epub"),
    ("application/x-iwork-pages-sffpages", "pages"),
    // Archives and programs.
    ("application/zip", "zip"),
    ("application/x-zip-compressed", "zip"),
    ("application/x-zip", "zip"),
    ("application/gzip", "gz"),
    ("application/x-gzip", "gz"),
    ("application/x-tar", "tar"),
    ("application/x-gtar", "tgz"),
    ("application/x-bzip2", "bz2"),
    ("application/x-xz", "xz"),
    ("application/zstd", "zst"),
    ("application/x-7z-compressed", "7z"),
    ("application/vnd.rar", "rar"),
    ("application/x-rar-compressed", "rar"),
    ("application/x-rar", "rar"),
    ("application/java-archive", "jar"),
    ("application/vnd.android.package-archive", "apk"),
    ("application/x-msdownload", "exe"),
    ("application/x-msi", "msi"),
    ("application/x-apple-diskimage", "dmg"),
    ("application/x-iso9660-image", "iso"),
    ("application/vnd.tcpdump.pcap", "pcap"),
    ("application/octet-stream", "bin"),
    // Images.
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    ("image/jpg", "jpg"),
    ("image/pjpeg", "jpg"),
    ("image/gif", "gif"),
    ("image/bmp", "bmp"),
    ("image/x-bmp", "bmp"),
    ("image/x-ms-bmp", "bmp"),
    ("image/tiff", "tif"),
    ("image/webp", "webp"),
    ("image/svg+xml", "svg"),
    ("image/heic", "heic"),
    ("image/heif", "heif"),
    ("image/avif", "avif"),
    ("image/x-icon", "ico"),
    ("image/vnd.microsoft.icon", "ico"),
    ("image/x-emf", "emf"),
    ("image/emf", "emf"),
    ("image/x-wmf", "wmf"),
    ("image/wmf", "wmf"),
    ("image/vnd.adobe.photoshop", "psd"),
    // Audio and video.
    ("audio/mpeg", "mp3"),
    ("audio/mp3", "mp3"),
    ("audio/mp4", "m4a"),
    ("audio/x-m4a", "m4a"),
    ("audio/aac", "aac"),
    ("audio/wav", "wav"),
    ("audio/x-wav", "wav"),
    ("audio/wave", "wav"),
    ("audio/ogg", "ogg"),
    ("audio/opus", "opus"),
    ("audio/flac", "flac"),
    ("audio/amr", "amr"),
    ("audio/webm", "weba"),
    ("audio/x-ms-wma", "wma"),
    ("audio/midi", "mid"),
    ("video/mp4", "mp4"),
    ("video/quicktime", "mov"),
    ("video/x-msvideo", "avi"),
    ("video/mpeg", "mpg"),
    ("video/webm", "webm"),
    ("video/x-matroska", "mkv"),
    ("video/3gpp", "3gp"),
    ("video/x-ms-wmv", "wmv"),
    ("video/ogg", "ogv"),
    // Fonts.
    ("font/ttf", "ttf"),
    ("font/otf", "otf"),
    ("font/woff", "woff"),
    ("font/woff2", "woff2"),
];

fn extension_for(content_type: &str) -> &'static str {
    match TYPES.iter().find(|(t, _)| *t == content_type) {
        Some((_, ext)) => ext,
        None if content_type.starts_with("text/") => "txt",
        None => "bin",
    }
}

/// The content type a file name's extension suggests, for files unpacked from containers
/// that carry no type (uuencode, TNEF without a MIME tag, AppleSingle), and for files
/// analysts attach from a terminal.
pub fn type_for_name(name: &str) -> &'static str {
    let Some((_, ext)) = name.rsplit_once('.') else {
        return "application/octet-stream";
    };
    let ext = ext.trim().to_ascii_lowercase();
    let ext = match ext.as_str() {
        "jpeg" | "jpe" => "jpg",
        "tiff" => "tif",
        "htm" => "html",
        "text" | "log" => "txt",
        // Not only TNEF streams end in .dat.
        "dat" => return "application/octet-stream",
        other => other,
    };
    TYPES.iter().find(|(_, e)| *e == ext).map_or("application/octet-stream", |(t, _)| t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn parse_str(s: &str) -> InboundMail {
        parse(s.as_bytes()).expect("parses")
    }

    #[test]
    fn attachment_names_are_decoded_and_made_safe() {
        let m = parse_str(concat!(
            "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n",
            "--XX\r\nContent-Type: text/plain\r\n\r\nbody\r\n",
            "--XX\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpass%C3%A9.pdf\r\n",
            "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n",
            "--XX\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"evil\u{202E}fdp.exe\"\r\n\r\nMZ\r\n",
            "--XX\r\nContent-Type: image/png\r\nContent-Disposition: attachment\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw==\r\n",
            "--XX--\r\n"
        ));
        let names: Vec<&str> = m.attachments.iter().map(|a| a.filename.as_str()).collect();
        assert_eq!(names, ["passé.pdf", "evilfdp.exe", "attachment-3.png"]);
        assert_eq!(m.attachments[0].data, b"%PDF-");
        assert_eq!(m.attachments[0].content_type, "application/pdf");
        assert_eq!(m.text, "body");
    }

    #[test]
    fn a_file_in_a_mail_cut_short_before_its_closing_boundary_is_still_decoded() {
        // mail-parser leaves the transfer encoding on for the last part when the closing
        // boundary never comes; the file must not be stored as base64 or QP text.
        for (encoding, body, want) in [
            ("base64", "JVBERi0xLjQK\r\nAAEC/w==\r\n", &b"%PDF-1.4\n\x00\x01\x02\xff"[..]),
            ("quoted-printable", "caf=C3=A9 =\r\nbar\r\n", &b"caf\xc3\xa9 bar\r\n"[..]),
        ] {
            let m = parse_str(&format!(
                "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n\
                 --XX\r\nContent-Type: text/plain\r\n\r\nbody\r\n\
                 --XX\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=f.bin\r\n\
                 Content-Transfer-Encoding: {encoding}\r\n\r\n{body}"
            ));
            assert_eq!(m.attachments.len(), 1, "{encoding}");
            assert_eq!(m.attachments[0].data, want, "{encoding}");
        }
    }

    #[test]
    fn split_rfc2231_names_are_joined_before_decoding() {
        // "Отчёт об ошибке (полный).docx" split in the middle of "ы" (D1 8B).
        let m = parse_str(concat!(
            "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nx\r\n",
            "--B\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n",
            "\tfilename*0*=UTF-8''%D0%9E%D1%82%D1%87%D1%91%D1%82%20%D0%BE;\r\n\tfilename*1*=%D0%B1%20%D0%BE%D1%88%D0%B8%D0%B1%D0%BA;\r\n",
            "\tfilename*2*=%D0%B5%20%28%D0%BF%D0%BE%D0%BB%D0%BD%D1;\r\n\tfilename*3*=%8B%D0%B9%29.docx\r\n\r\ndata\r\n--B--\r\n"
        ));
        assert_eq!(m.attachments[0].filename, "Отчёт об ошибке (полный).docx");
        let m = parse_str(concat!(
            "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nx\r\n",
            "--B\r\nContent-Type: application/pdf; name*0*=iso-8859-1''Gr%FC; name*1=\"n.pdf\"\r\n\r\ndata\r\n--B--\r\n"
        ));
        assert_eq!(m.attachments[0].filename, "Grün.pdf");
        assert_eq!(percent_decode("%é%4"), "%é%4".as_bytes());
    }

    #[test]
    fn safe_filename_keeps_extension_when_truncating() {
        let long = format!("{}.pdf", "ä".repeat(300));
        let name = safe_filename(Some(&long), "application/pdf", 1);
        assert!(name.len() <= MAX_FILENAME && name.ends_with("….pdf"), "{name}");
        assert_eq!(safe_filename(Some("..."), "text/plain", 2), "attachment-2.txt");
        assert_eq!(safe_filename(Some(".htaccess"), "text/plain", 2), "htaccess");
    }

    #[test]
    fn attached_message_is_parsed_and_kept_as_eml() {
        let m = parse_str(concat!(
            "From: admin@example.com\r\nSubject: Fwd: printer\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n",
            "--B\r\nContent-Type: text/plain\r\n\r\nsee below\r\n",
            "--B\r\nContent-Type: message/rfc822\r\n\r\n",
            "From: Cust <cust@customer.example>\r\nSubject: Printer on fire\r\nCc: boss@customer.example\r\n\r\nIt burns.\r\n",
            "--B--\r\n"
        ));
        assert_eq!(m.attached_messages.len(), 1);
        let inner = &m.attached_messages[0];
        assert_eq!(inner.from_address().unwrap().as_str(), "cust@customer.example");
        assert_eq!(inner.subject, "Printer on fire");
        assert_eq!(inner.text, "It burns.");
        assert_eq!(m.attachments[0].disposition, Disposition::Message);
        assert_eq!(m.attachments[0].filename, "Printer on fire.eml");
    }

    use base64::Engine;

    fn sha(data: &[u8]) -> String {
        crate::digest::sha256_hex(data)
    }

    /// Base64 in 76-column lines, as mail programs write it.
    fn b64(data: &[u8]) -> String {
        let text = base64::engine::general_purpose::STANDARD.encode(data);
        let lines: Vec<&str> =
            text.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect();
        lines.join("\r\n")
    }

    /// A multipart/mixed mail: a plain body, then each part (its headers, a blank line, its body).
    fn mixed(parts: &[(&str, &str)]) -> String {
        let mut s = String::from(
            "From: a@b.example\r\nSubject: files\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nbody\r\n",
        );
        for (headers, body) in parts {
            s.push_str(&format!("--B\r\n{headers}\r\n\r\n{body}\r\n"));
        }
        s.push_str("--B--\r\n");
        s
    }

    fn names(m: &InboundMail) -> Vec<&str> {
        m.attachments.iter().map(|a| a.filename.as_str()).collect()
    }

    #[test]
    fn unnamed_parts_are_kept_and_named_from_their_type() {
        let m = parse_str(&mixed(&[
            ("Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64", &b64(b"%PDF-1.7 report")),
            ("Content-Type: image/png\r\nContent-Disposition: attachment", "PNG"),
            ("Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document", "PK docx"),
            ("Content-Type: application/vnd.ms-excel", "xls"),
            ("Content-Type: application/zip", "PK zip"),
            ("Content-Type: text/csv; charset=utf-8", "a,b\r\n1,2"),
            ("Content-Type: application/json", "{}"),
            ("Content-Type: text/calendar; method=REQUEST", "BEGIN:VCALENDAR"),
            ("Content-Type: text/vcard", "BEGIN:VCARD"),
            ("Content-Type: audio/mpeg", "ID3"),
            ("Content-Type: video/mp4", "ftyp"),
            ("Content-Type: application/xml", "<a/>"),
            ("Content-Type: application/x-unheard-of", "?"),
            ("Content-Type: text/x-unheard-of", "?"),
        ]));
        assert_eq!(
            names(&m),
            [
                "attachment-1.pdf",
                "attachment-2.png",
                "attachment-3.docx",
                "attachment-4.xls",
                "attachment-5.zip",
                "attachment-6.csv",
                "attachment-7.json",
                "attachment-8.ics",
                "attachment-9.vcf",
                "attachment-10.mp3",
                "attachment-11.mp4",
                "attachment-12.xml",
                "attachment-13.bin",
                "attachment-14.txt",
            ]
        );
        assert_eq!(m.attachments[0].data, b"%PDF-1.7 report");
        assert_eq!(m.attachments[5].data, b"a,b\r\n1,2");
        assert_eq!(m.text, "body");
    }

    #[test]
    fn octet_streams_with_odd_dispositions_are_all_kept() {
        let m = parse_str(&mixed(&[
            ("Content-Type: application/octet-stream", "no disposition"),
            ("Content-Type: application/octet-stream\r\nContent-Disposition: inline; filename=a.dat", "inline"),
            ("Content-Type: application/octet-stream\r\nContent-Disposition: frobnicate; filename=b.dat", "unknown"),
            ("Content-Type: application/octet-stream\r\nContent-Disposition: filename=c.dat", "typeless"),
            ("Content-Type: application/octet-stream\r\nContent-Disposition: ; filename=\"d e.dat\"", "empty type"),
            ("Content-Disposition: attachment; filename=f.log", "no content type"),
        ]));
        assert_eq!(names(&m), ["attachment-1.bin", "a.dat", "b.dat", "c.dat", "d e.dat", "f.log"]);
        let data: Vec<&[u8]> = m.attachments.iter().map(|a| a.data.as_slice()).collect();
        assert_eq!(
            data,
            [&b"no disposition"[..], b"inline", b"unknown", b"typeless", b"empty type", b"no content type"]
        );
        let dispositions: Vec<Disposition> = m.attachments.iter().map(|a| a.disposition).collect();
        assert_eq!(dispositions[..2], [Disposition::Attachment, Disposition::Inline]);
        assert_eq!(m.text, "body");
    }

    #[test]
    fn body_parts_the_text_does_not_show_are_kept_as_files() {
        let m = parse_str(&mixed(&[
            // An HTML part after the plain body is not an alternative of it: not shown.
            ("Content-Type: text/html; charset=utf-8", "<p>Price list</p>"),
            // Shown in the text, and still the file the sender attached.
            ("Content-Type: text/plain\r\nContent-Disposition: inline; filename=error.log", "E1 failed\r\nE2 failed"),
        ]));
        assert_eq!(names(&m), ["attachment-1.html", "error.log"]);
        assert_eq!(m.attachments[0].content_type, "text/html");
        assert_eq!(m.attachments[0].data, b"<p>Price list</p>");
        assert_eq!(m.attachments[1].data, b"E1 failed\r\nE2 failed");
        assert_eq!(m.attachments[1].disposition, Disposition::Inline);
        assert_eq!(m.text, "body\n\nE1 failed\nE2 failed");
        // The usual alternative of plain and HTML text stays the body only.
        let m = parse_str(concat!(
            "From: a@b.example\r\nContent-Type: multipart/alternative; boundary=A\r\n\r\n",
            "--A\r\nContent-Type: text/plain\r\n\r\nhello\r\n--A\r\nContent-Type: text/html\r\n\r\n<p>hello</p>\r\n--A--\r\n"
        ));
        assert!(m.attachments.is_empty(), "{:?}", names(&m));
    }

    #[test]
    fn inline_images_keep_their_content_id_and_inline_disposition() {
        let m = parse_str(concat!(
            "From: a@b.example\r\nContent-Type: multipart/related; boundary=R\r\n\r\n",
            "--R\r\nContent-Type: text/html\r\n\r\n<img src=\"cid:logo@x\"><img src=\"cid:chart@x\">\r\n",
            "--R\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw==\r\n",
            "--R\r\nContent-Type: image/gif; name=chart.gif\r\nContent-ID: <chart@x>\r\nContent-Disposition: inline; filename=chart.gif\r\n\r\nGIF89a\r\n",
            "--R\r\nContent-Type: image/jpeg\r\nContent-ID: <photo@x>\r\nContent-Disposition: attachment; filename=photo.jpg\r\n\r\nJFIF\r\n",
            "--R--\r\n"
        ));
        let seen: Vec<(&str, Disposition, Option<&str>)> =
            m.attachments.iter().map(|a| (a.filename.as_str(), a.disposition, a.content_id.as_deref())).collect();
        assert_eq!(
            seen,
            [
                ("attachment-1.png", Disposition::Inline, Some("logo@x")),
                ("chart.gif", Disposition::Inline, Some("chart@x")),
                ("photo.jpg", Disposition::Attachment, Some("photo@x")),
            ]
        );
        assert_eq!(m.attachments[0].data, b"\x89PNG");
    }

    #[test]
    fn attached_messages_are_kept_at_any_depth_and_inside_digests() {
        // Forwards of forwards, each base64-encoded: mail-parser stops parsing encoded
        // messages after three levels, but every level is still an `.eml` named by subject.
        let mut levels = vec![String::from("From: n0@x.example\r\nSubject: level0\r\n\r\nthe original\r\n")];
        for i in 1..=6 {
            let inner = levels.last().expect("starts with one level");
            levels.push(format!(
                "From: n{i}@x.example\r\nSubject: level{i}\r\nContent-Type: multipart/mixed; boundary=L{i}\r\n\r\n\
                 --L{i}\r\nContent-Type: text/plain\r\n\r\nbody{i}\r\n\
                 --L{i}\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--L{i}--\r\n",
                b64(inner.as_bytes())
            ));
        }
        let mut mail = parse_str(&levels[6]);
        for (depth, expected) in (0..6).rev().enumerate() {
            assert_eq!(names(&mail), [format!("level{expected}.eml")], "at depth {depth}");
            let a = &mail.attachments[0];
            assert_eq!((a.disposition, a.content_type.as_str()), (Disposition::Message, "message/rfc822"));
            assert_eq!(sha(&a.data), sha(levels[expected].as_bytes()), "at depth {depth}");
            if mail.attached_messages.is_empty() {
                // Beyond the depth that is parsed, the file is parsed on its own.
                mail = parse(&a.data).expect("an attached message parses");
            } else {
                mail = mail.attached_messages.remove(0);
            }
        }

        let m = parse_str(concat!(
            "From: list@b.example\r\nSubject: digest\r\nContent-Type: multipart/mixed; boundary=M\r\n\r\n",
            "--M\r\nContent-Type: text/plain\r\n\r\nToday's digest\r\n",
            "--M\r\nContent-Type: multipart/digest; boundary=D\r\n\r\n",
            "--D\r\n\r\nFrom: one@x.example\r\nSubject: first post\r\n\r\nfirst\r\n",
            "--D\r\nContent-Type: message/rfc822\r\n\r\nFrom: two@x.example\r\n\r\nsecond, no subject\r\n",
            "--D--\r\n--M--\r\n"
        ));
        assert_eq!(names(&m), ["first post.eml", "attachment-2.eml"]);
        assert!(m.attachments.iter().all(|a| a.disposition == Disposition::Message));
        assert_eq!(m.attachments[1].data, b"From: two@x.example\r\n\r\nsecond, no subject");
    }

    #[test]
    fn bounce_reports_and_returned_headers_are_kept_as_text_files() {
        let m = parse_str(concat!(
            "From: MAILER-DAEMON@b.example\r\nSubject: Undelivered Mail Returned to Sender\r\n",
            "Content-Type: multipart/report; report-type=delivery-status; boundary=R\r\n\r\n",
            "--R\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n",
            "--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; b.example\r\n\r\n",
            "Final-Recipient: rfc822; gone@x.example\r\nAction: failed\r\nStatus: 5.1.1\r\n",
            "--R\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: support@example.com\r\nSubject: [CASE-1] hello\r\n",
            "--R--\r\n"
        ));
        assert_eq!(names(&m), ["attachment-1.txt", "attachment-2.txt"]);
        let types: Vec<&str> = m.attachments.iter().map(|a| a.content_type.as_str()).collect();
        assert_eq!(types, ["message/delivery-status", "text/rfc822-headers"]);
        assert_eq!(m.attachments[1].data, b"From: support@example.com\r\nSubject: [CASE-1] hello");
        assert!(m.delivery_status.as_deref().is_some_and(|s| s.contains("5.1.1")));
    }

    #[test]
    fn apple_double_keeps_both_forks_and_names_the_data_fork() {
        use crate::parse::applefile::tests::build;
        let resource = build(0x0005_1607, &[(2, b"resource fork"), (3, b"Notes.txt")]);
        let single = build(0x0005_1600, &[(3, b"photo.jpg"), (1, b"JFIF photo bytes")]);
        let m = parse_str(&mixed(&[
            // Named on the resource fork only (Mail.app), the data fork as a bare octet-stream.
            (
                "Content-Type: multipart/appledouble; boundary=A1\r\nContent-Disposition: attachment",
                &format!(
                    "--A1\r\nContent-Type: application/applefile; name=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
                     --A1\r\nContent-Type: application/octet-stream\r\n\r\n%PDF-1.4\r\n--A1--",
                    b64(&resource)
                ),
            ),
            // No names in MIME at all: the AppleDouble header's real name is used.
            (
                "Content-Type: multipart/appledouble; boundary=A2",
                &format!(
                    "--A2\r\nContent-Type: application/applefile\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
                     --A2\r\nContent-Type: text/plain\r\n\r\nnote text\r\n--A2--",
                    b64(&resource)
                ),
            ),
            // AppleSingle: the data fork travels inside the applefile part.
            (
                "Content-Type: application/applefile\r\nContent-Transfer-Encoding: base64",
                &b64(&single),
            ),
        ]));
        assert_eq!(
            names(&m),
            [
                "report.pdf.applefile",
                "report.pdf",
                "Notes.txt.applefile",
                "Notes.txt",
                "photo.jpg.applefile",
                "photo.jpg"
            ]
        );
        assert_eq!(sha(&m.attachments[0].data), sha(&resource));
        assert_eq!(m.attachments[1].data, b"%PDF-1.4");
        assert_eq!(m.attachments[3].data, b"note text");
        assert_eq!(sha(&m.attachments[4].data), sha(&single));
        assert_eq!(m.attachments[5].data, b"JFIF photo bytes");
        assert_eq!(m.attachments[5].content_type, "image/jpeg");
    }

    #[test]
    fn uuencoded_files_in_the_text_become_attachments_and_leave_the_text() {
        let tar: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let body = format!(
            "Hi,\n\nthe config and a dump are below.\n\n{}\n{}\nRegards,\nJoe\n",
            crate::parse::uuencode::tests::encode("app.conf", b"port = 8080\nhost = ::1\n"),
            crate::parse::uuencode::tests::encode("../dump.tar", &tar)
        );
        let raw = format!("From: a@b.example\r\nSubject: uu\r\n\r\n{}", body.replace('\n', "\r\n"));
        let m = parse_str(&raw);
        assert_eq!(names(&m), ["app.conf", "dump.tar"]);
        assert_eq!(m.attachments[0].data, b"port = 8080\nhost = ::1\n");
        assert_eq!(sha(&m.attachments[1].data), sha(&tar));
        assert_eq!(m.attachments[1].content_type, "application/x-tar");
        assert_eq!(m.text, "Hi,\n\nthe config and a dump are below.\n\nRegards,\nJoe");
    }

    #[test]
    fn winmail_dat_is_kept_and_the_files_inside_are_unpacked() {
        use crate::parse::tnef::tests::writer::*;
        let doc: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
        let tnef = stream(
            &[
                head(1252),
                attachment(
                    Some(b"ANGEBO~1.DOC\0"),
                    Some(&doc),
                    Some(props(&[(0x001F, 0x3707, unicode("Angebot für ACME.docx"))])),
                ),
                attachment(Some(b"..\\..\\boot.ini\0"), Some(b"[boot loader]"), None),
            ]
            .concat(),
        );
        let m = parse_str(&mixed(&[
            (
                "Content-Type: application/ms-tnef; name=\"winmail.dat\"\r\nContent-Disposition: attachment; filename=\"winmail.dat\"\r\nContent-Transfer-Encoding: base64",
                &b64(&tnef),
            ),
            // Some gateways relabel it: the name is enough.
            ("Content-Type: application/octet-stream; name=WINMAIL.DAT\r\nContent-Transfer-Encoding: base64", &b64(&tnef)),
        ]));
        assert_eq!(
            names(&m),
            ["winmail.dat", "Angebot für ACME.docx", "boot.ini", "WINMAIL.DAT", "Angebot für ACME.docx", "boot.ini"]
        );
        assert_eq!(sha(&m.attachments[0].data), sha(&tnef));
        assert_eq!(
            m.attachments[1].content_type,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        );
        assert_eq!(sha(&m.attachments[1].data), sha(&doc));
        assert_eq!(m.attachments[2].data, b"[boot loader]");
        assert_eq!(m.attachments[2].content_type, "application/octet-stream");
        assert!(m.problems.is_empty(), "{:?}", m.problems);

        // A damaged stream is kept as it is, with the reason.
        let mut broken = tnef.clone();
        broken.truncate(tnef.len() / 2);
        let m = parse_str(&mixed(&[(
            "Content-Type: application/ms-tnef\r\nContent-Transfer-Encoding: base64",
            &b64(&broken),
        )]));
        assert_eq!(names(&m)[0], "attachment-1.dat");
        assert_eq!(sha(&m.attachments[0].data), sha(&broken));
        assert!(m.problems.iter().any(|p| p.contains("winmail.dat")), "{:?}", m.problems);
    }

    #[test]
    fn thousands_of_parts_and_packed_files_stay_bounded() {
        let parts: Vec<(String, String)> = (0..MAX_PARTS + 500)
            .map(|i| ("Content-Type: application/octet-stream".to_string(), format!("part {i}")))
            .collect();
        let refs: Vec<(&str, &str)> = parts.iter().map(|(h, b)| (h.as_str(), b.as_str())).collect();
        let m = parse_str(&mixed(&refs));
        assert_eq!(m.attachments.len(), MAX_PARTS);
        assert_eq!(m.attachments[MAX_PARTS - 1].data, format!("part {}", MAX_PARTS - 1).as_bytes());

        use crate::parse::tnef::tests::writer::*;
        let files: Vec<Vec<Vec<u8>>> =
            (0..MAX_PARTS * 2).map(|_| attachment(Some(b"f.txt\0"), Some(b"x"), None)).collect();
        let tnef = stream(&files.concat());
        let m = parse_str(&mixed(&[(
            "Content-Type: application/ms-tnef\r\nContent-Transfer-Encoding: base64",
            &b64(&tnef),
        )]));
        assert_eq!(m.attachments.len(), MAX_PARTS);
        assert!(m.problems.iter().any(|p| p.contains("more were not unpacked")), "{:?}", m.problems);
    }
}
