//! What mail programs write around an earlier message inside a body, recognised one line at
//! a time: header blocks ("From: … Sent: … To: … Subject: …", bold or localised),
//! "-----Original Message-----" lines, separator rules, and the marker lines of a forward
//! ("---------- Forwarded message ---------", "Begin forwarded message:"); also the link
//! list html2text appends to a rendered body, which must be set apart from the text.
//!
//! Reply trimming ([`super::reply`]) cuts the history at these lines and forward detection
//! ([`super::forward`]) reads the original's sender from them. Both recognise them here, so
//! neither needs the other's rules.

use std::sync::LazyLock;

use regex::Regex;

/// Compiles a pattern that is a constant of the parse modules.
pub(super) fn constant_regex(pattern: &str) -> Regex {
    // The patterns are literals in these files and every one is exercised by the unit tests,
    // so a failure here is a programming error caught before release.
    Regex::new(pattern).expect("constant regex compiles")
}

/// A line as matched: trimmed, invisible characters removed, no-break spaces as spaces.
pub(super) fn clean_line(raw: &str) -> String {
    // Every character dropped or replaced below is encoded with a lead byte of C2, E2 or
    // EF; most lines have none of them and need no pass over their characters.
    if !raw.bytes().any(|b| matches!(b, 0xC2 | 0xE2 | 0xEF)) {
        return raw.trim().to_string();
    }
    raw.chars()
        .filter(|c| !matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}' | '\u{FEFF}'))
        .map(|c| if c == '\u{A0}' { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// A rule of dashes, underscores, equals signs or the like ("________________", "- - -").
pub(super) fn is_separator(clean: &str) -> bool {
    let mut marks = 0;
    for c in clean.chars() {
        if "-_=*~─━—–".contains(c) {
            marks += 1;
        } else if !c.is_whitespace() {
            return false;
        }
    }
    marks >= 3
}

/// A time, a year or a numeric date: what separates "On 3 May 2021, Bob wrote:" from
/// "On 3 occasions Bob wrote:", and a "Sent:" line from prose.
static DATEISH: LazyLock<Regex> =
    LazyLock::new(|| constant_regex(r"\d{1,2}[:.]\d{2}|\b(?:19|20)\d{2}\b|\b\d{1,2}[./-]\d{1,2}[./-]\d{2,4}\b"));

/// Whether `s` contains a time, a year or a numeric date.
pub(super) fn looks_dated(s: &str) -> bool {
    DATEISH.is_match(s)
}

// ---------------------------------------------------------------------------------------
// Header blocks ("From: … Sent: … To: … Subject: …")

/// A field of a header block quoted in a mail body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum HeaderField {
    From,
    To,
    Cc,
    /// Date, or Outlook's "Sent".
    Date,
    Subject,
    ReplyTo,
}

fn field_named(name: &str) -> Option<HeaderField> {
    use HeaderField::*;
    Some(match name {
        "from" | "von" | "de" | "van" | "da" | "fra" | "från" | "od" | "от" | "lähettäjä" | "kimden" | "feladó"
        | "absender" | "expéditeur" | "remitente" | "afzender" | "avsändare" | "发件人" | "發件人" | "寄件者"
        | "差出人" => From,
        "sent"
        | "date"
        | "datum"
        | "gesendet"
        | "envoyé"
        | "envoyé le"
        | "envoye"
        | "enviado"
        | "enviado el"
        | "enviada em"
        | "enviado em"
        | "enviada"
        | "fecha"
        | "data"
        | "inviato"
        | "verzonden"
        | "verstuurd"
        | "skickat"
        | "sendt"
        | "dato"
        | "wysłano"
        | "wysłane"
        | "отправлено"
        | "дата"
        | "lähetetty"
        | "päivämäärä"
        | "gönderildi"
        | "tarih"
        | "odesláno"
        | "message du"
        | "发送时间"
        | "日期"
        | "送信日時"
        | "日付"
        | "寄件日期"
        | "傳送時間" => Date,
        "to" | "an" | "à" | "a" | "para" | "aan" | "till" | "til" | "do" | "кому" | "vastaanottaja" | "kime"
        | "címzett" | "komu" | "destinataire" | "empfänger" | "收件人" | "收件者" | "宛先" => To,
        "cc" | "kopie" | "copie" | "copie à" | "cópia" | "copia" | "kopia" | "dw" | "копия" | "kopio" | "bilgi"
        | "másolat" | "抄送" | "副本" => Cc,
        "subject" | "betreff" | "objet" | "asunto" | "assunto" | "oggetto" | "onderwerp" | "ämne" | "emne"
        | "temat" | "тема" | "aihe" | "konu" | "tárgy" | "předmět" | "sujet" | "主题" | "主旨" | "件名" => {
            Subject
        }
        "reply-to" | "antwort an" | "répondre à" | "responder a" => ReplyTo,
        _ => return None,
    })
}

/// Reads one header line of a quoted or forwarded message: `From: x`, `*From:* x`,
/// `**Sent:** x`, `De : x`, `Envoyé le :x`. Returns the field and its value.
pub(super) fn header_field(line: &str) -> Option<(HeaderField, &str)> {
    let s = line.trim().trim_start_matches(['*', '_']).trim_start();
    let (colon, colon_char) = s.char_indices().take(32).find(|(_, c)| *c == ':' || *c == '：')?;
    let name = s[..colon].trim().trim_end_matches(['*', '_']).trim_end();
    if name.is_empty() {
        return None;
    }
    let field = field_named(&name.to_lowercase())?;
    let value = s[colon + colon_char.len_utf8()..].trim_start().trim_start_matches(['*', '_']).trim();
    Some((field, value))
}

/// A header block: consecutive header lines, values of wrapped lines joined.
#[derive(Debug, Clone)]
pub(super) struct HeaderBlock {
    /// Index of the last line that belongs to the block.
    pub(super) end: usize,
    fields: Vec<(HeaderField, String)>,
}

impl HeaderBlock {
    pub(super) fn value(&self, field: HeaderField) -> Option<&str> {
        self.fields.iter().find(|(f, _)| *f == field).map(|(_, v)| v.as_str())
    }

    fn has(&self, field: HeaderField) -> bool {
        self.fields.iter().any(|(f, _)| *f == field)
    }

    fn distinct(&self) -> usize {
        let mut seen: Vec<HeaderField> = Vec::new();
        for (f, _) in &self.fields {
            if !seen.contains(f) {
                seen.push(*f);
            }
        }
        seen.len()
    }

    /// Whether this block introduces an earlier message rather than being prose that
    /// happens to contain "From:" and "To:" (an itinerary, say).
    pub(super) fn introduces_history(&self, after_separator: bool) -> bool {
        let from_has_address = self.value(HeaderField::From).is_some_and(|v| v.contains('@'));
        let dated = self.value(HeaderField::Date).is_some_and(looks_dated);
        let from = self.has(HeaderField::From);
        if self.distinct() >= 3 && from && (self.has(HeaderField::Subject) || from_has_address || dated) {
            return true;
        }
        after_separator && self.distinct() >= 2 && (from || self.has(HeaderField::Date))
    }
}

/// Reads the header block whose first line is `lines[start]`, or `None` if that is not a
/// header line. Wrapped values (address lists, Outlook's "12:06\nPM") are joined; one blank
/// line between fields is allowed when a new field follows it.
pub(super) fn read_header_block<S: AsRef<str>>(lines: &[S], start: usize) -> Option<HeaderBlock> {
    let (field, value) = header_field(lines.get(start)?.as_ref())?;
    let mut block = HeaderBlock { end: start, fields: vec![(field, value.to_string())] };
    let mut blanks = 0;
    let mut wrapped = 0;
    for (k, line) in lines.iter().enumerate().skip(start + 1) {
        let raw = line.as_ref();
        let text = raw.trim();
        if text.is_empty() {
            blanks += 1;
            if blanks > 1 {
                break;
            }
            continue;
        }
        if let Some((field, value)) = header_field(text) {
            if blanks > 0 && block.has(field) {
                break;
            }
            block.fields.push((field, value.to_string()));
            block.end = k;
            blanks = 0;
            wrapped = 0;
            continue;
        }
        if blanks == 0 && GENERIC_HEADER.is_match(text) {
            // A field we do not use ("Organization:", "Importance:") still belongs to the block.
            block.end = k;
            wrapped = 0;
            continue;
        }
        // A wrapped value: address lists, a name with its address on the next line,
        // Outlook's "12:06\nPM".
        if blanks > 0 || wrapped >= 2 || is_separator(text) {
            break;
        }
        wrapped += 1;
        if let Some((_, v)) = block.fields.last_mut() {
            v.push(' ');
            v.push_str(text);
        }
        block.end = k;
    }
    Some(block)
}

static GENERIC_HEADER: LazyLock<Regex> = LazyLock::new(|| constant_regex(r"^[A-Za-z][A-Za-z-]{1,30}:\s"));

// ---------------------------------------------------------------------------------------
// Lines that announce an earlier message

/// "-----Original Message-----" and its translations.
static ORIGINAL_MESSAGE: LazyLock<Regex> = LazyLock::new(|| {
    constant_regex(
        r"(?i)^[*_\s]*-{2,}\s*(?:original message|original-nachricht|ursprüngliche nachricht|urspr\.? nachricht|mensaje original|message d'origine|message original|messaggio originale|oorspronkelijk bericht|origineel bericht|originalmeddelande|ursprungligt meddelande|opprinnelig melding|oprindelig meddelelse|oprindelig besked|originalnachricht|alkuperäinen viesti|wiadomość oryginalna|oryginalna wiadomość|исходное сообщение|mensagem original|původní zpráva|pôvodná správa|eredeti üzenet|orijinal ileti|原始邮件|原始郵件|元のメッセージ|reply message)\s*-*[*_\s]*$",
    )
});

/// Whether a cleaned line is "-----Original Message-----" or a translation of it. Outlook
/// writes it above a reply's history and above a forward alike.
pub(super) fn is_original_message(clean: &str) -> bool {
    ORIGINAL_MESSAGE.is_match(clean)
}

/// Which marker line announced a forwarded message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ForwardMarker {
    /// "---------- Forwarded message ---------" with any number of dashes but eight (Gmail,
    /// and webmail such as Yahoo and Outlook.com with five dashes).
    Dashed,
    /// "-------- Forwarded Message --------", eight dashes: Thunderbird's.
    Thunderbird,
    /// "Begin forwarded message:" (Apple Mail).
    BeginForwarded,
}

static DASHED_MARKER: LazyLock<Regex> = LazyLock::new(|| {
    constant_regex(
        r"(?i)^[*_\s]*(-{2,})\s*(?:forwarded message|forwarded e-?mail|weitergeleitete nachricht|message transféré|message transfere|mensaje reenviado|messaggio inoltrato|doorgestuurd bericht|mensagem encaminhada|mensagem reencaminhada|vidarebefordrat meddelande|videresendt melding|videresendt meddelelse|przekazana wiadomość|wiadomość przekazana|пересылаемое сообщение|переслане повідомлення|přeposlaná zpráva|välitetty viesti|iletilen mesaj|转发的邮件|轉寄的郵件|転送されたメッセージ)\s*-*[*_\s]*:?$",
    )
});
static APPLE_MARKER: LazyLock<Regex> = LazyLock::new(|| {
    constant_regex(
        r"(?i)^[*_\s]*(?:begin forwarded message|anfang der weitergeleiteten nachricht|début du message réexpédié|début du message transféré|inicio del mensaje reenviado|comienzo del mensaje reenviado|inizio messaggio inoltrato|begin doorgestuurd bericht|início da mensagem reencaminhada|início da mensagem encaminhada|vidarebefordrat brev|videresendt e-post|start på videresendt besked|начало переадресованного сообщения|początek przekazywanej wiadomości)\s*:[*_\s]*$",
    )
});

/// The marker a line is, for a trimmed line: only forwarding produces these lines, so a
/// forwarded message below one is meant to be read, not history to cut.
pub(super) fn forward_marker(line: &str) -> Option<ForwardMarker> {
    if line.len() > 120 {
        return None;
    }
    if let Some(caps) = DASHED_MARKER.captures(line) {
        let dashes = caps.get(1).map_or(0, |m| m.len());
        return Some(if dashes == 8 { ForwardMarker::Thunderbird } else { ForwardMarker::Dashed });
    }
    APPLE_MARKER.is_match(line).then_some(ForwardMarker::BeginForwarded)
}

// ---------------------------------------------------------------------------------------
// Rendered HTML

static FOOTNOTE: LazyLock<Regex> = LazyLock::new(|| constant_regex(r"^\[\d+\]: \S"));

/// Splits html2text's link list (`[1]: https://…` lines at the end) from the body.
pub(super) fn split_footnotes(rendered: &str) -> (String, Vec<String>) {
    let lines: Vec<&str> = rendered.split('\n').collect();
    let mut start = lines.len();
    while start > 0 && FOOTNOTE.is_match(lines[start - 1]) {
        start -= 1;
    }
    let notes_follow_blank = start == 0 || lines[start - 1].trim().is_empty();
    if start == lines.len() || !notes_follow_blank {
        return (rendered.to_string(), Vec::new());
    }
    let notes = lines[start..].iter().map(|s| s.to_string()).collect();
    (lines[..start].join("\n"), notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_line_drops_invisible_characters_and_reads_no_break_spaces_as_spaces() {
        assert_eq!(clean_line("  \u{FEFF}From:\u{A0}a\u{200B}b \t"), "From: ab");
        assert_eq!(clean_line("\u{A0}\u{200E}"), "");
        assert_eq!(clean_line(" plain "), "plain");
    }

    #[test]
    fn header_lines_are_read_bold_localised_and_with_odd_colons() {
        let cases = [
            ("From: Jane <j@x.example>", HeaderField::From, "Jane <j@x.example>"),
            ("*From:* Jane", HeaderField::From, "Jane"),
            ("**Sent:** Monday", HeaderField::Date, "Monday"),
            ("De : Jeanne", HeaderField::From, "Jeanne"),
            ("Envoyé le :jeudi", HeaderField::Date, "jeudi"),
            ("Betreff: Drucker", HeaderField::Subject, "Drucker"),
            ("件名：テスト", HeaderField::Subject, "テスト"),
            ("Copie à : ", HeaderField::Cc, ""),
        ];
        for (line, field, value) in cases {
            assert_eq!(header_field(line), Some((field, value)), "{line:?}");
        }
        for line in ["Organization: Acme", ": nothing", "From Jane", "Note that From: is a field"] {
            assert_eq!(header_field(line), None, "{line:?}");
        }
    }

    #[test]
    fn header_block_joins_wrapped_values_and_stops_at_the_text() {
        let lines = [
            "From: Human Resources",
            "<hr@x.example>",
            "Sent: Friday, June 27, 2014 12:06",
            "PM",
            "Importance: High",
            "",
            "Subject: Test",
            "",
            "Body text.",
        ];
        let block = read_header_block(&lines, 0).expect("a header block");
        assert_eq!(block.end, 6);
        assert_eq!(block.value(HeaderField::From), Some("Human Resources <hr@x.example>"));
        assert_eq!(block.value(HeaderField::Date), Some("Friday, June 27, 2014 12:06 PM"));
        assert_eq!(block.value(HeaderField::Subject), Some("Test"));
        assert!(block.introduces_history(false));
        assert!(read_header_block(&lines, 8).is_none());
        // An itinerary has fields but no address, subject or date: prose, unless a rule
        // stands above it.
        let trip = read_header_block(&["From: Berlin", "To: Paris"], 0).expect("a header block");
        assert!(!trip.introduces_history(false));
        assert!(trip.introduces_history(true));
    }

    #[test]
    fn forward_markers_tell_the_mail_program_apart_and_need_the_whole_line() {
        let cases = [
            ("---------- Forwarded message ---------", Some(ForwardMarker::Dashed)),
            ("----- Forwarded Message -----", Some(ForwardMarker::Dashed)),
            ("-------- Forwarded Message --------", Some(ForwardMarker::Thunderbird)),
            ("*---------- Weitergeleitete Nachricht ----------*", Some(ForwardMarker::Dashed)),
            ("Begin forwarded message:", Some(ForwardMarker::BeginForwarded)),
            ("Début du message réexpédié :", Some(ForwardMarker::BeginForwarded)),
            ("I forwarded the message to the team.", None),
            ("-----Original Message-----", None),
        ];
        for (line, want) in cases {
            assert_eq!(forward_marker(line), want, "{line:?}");
        }
        assert!(is_original_message("*----- Original Message -----*"));
        assert!(!is_original_message("the original message was lost"));
    }

    #[test]
    fn footnotes_are_split_only_when_they_end_the_text_after_a_blank_line() {
        let (body, notes) = split_footnotes("See [doc][1].\n\n[1]: https://x.example/doc\n[2]: mailto:a@x.example");
        assert_eq!(body, "See [doc][1].\n");
        assert_eq!(notes, ["[1]: https://x.example/doc", "[2]: mailto:a@x.example"]);
        let glued = "See [doc][1].\n[1]: https://x.example/doc";
        assert_eq!(split_footnotes(glued), (glued.to_string(), Vec::new()));
    }
}
