//! An incremental parser of `text/event-stream` (the parts the watch
//! stream uses: `id`, `event`, `data`, comments), fed with chunks as they
//! arrive from the network.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    /// The `id:` field, if the event had one.
    pub id: Option<String>,
    /// The `event:` field (`message` when absent).
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Bytes of an unfinished line, and the fields of the event being read.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    line: Vec<u8>,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

/// The longest line accepted: events are small JSON objects, so a longer
/// line means the peer is not a keyshift server.
const MAX_LINE: usize = 1 << 20;

impl Parser {
    /// Feeds `chunk`; returns the events it completed.
    ///
    /// # Errors
    ///
    /// A line longer than 1 MiB.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<Message>, String> {
        let mut out = Vec::new();
        for &b in chunk {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if let Some(m) = self.line_done(&String::from_utf8_lossy(&line)) {
                    out.push(m);
                }
            } else {
                if self.line.len() >= MAX_LINE {
                    return Err("an event-stream line is longer than 1 MiB".to_owned());
                }
                self.line.push(b);
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &str) -> Option<Message> {
        if line.is_empty() {
            let (id, event, data) = (self.id.take(), self.event.take(), self.data.take());
            return Some(Message {
                id,
                event: event.unwrap_or_else(|| "message".to_owned()),
                data: data?,
            });
        }
        if line.starts_with(':') {
            return None; // a comment: `: keep-alive`
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "id" => self.id = Some(value.to_owned()),
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {} // `retry` and unknown fields are ignored
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_are_reassembled() {
        let mut p = Parser::default();
        let stream = "id: 42\nevent: labels_moved\ndata: {\"a\":1}\n\n: keep-alive\n\nid:43\r\ndata:x\r\ndata: y\r\n\r\n";
        let mut got = Vec::new();
        for chunk in stream.as_bytes().chunks(5) {
            got.extend(p.push(chunk).unwrap());
        }
        assert_eq!(
            got,
            vec![
                Message {
                    id: Some("42".into()),
                    event: "labels_moved".into(),
                    data: "{\"a\":1}".into()
                },
                Message {
                    id: Some("43".into()),
                    event: "message".into(),
                    data: "x\ny".into()
                },
            ]
        );
    }

    #[test]
    fn multibyte_characters_cut_by_a_chunk_boundary_survive() {
        let mut p = Parser::default();
        let text = "data: é✓\n\n".as_bytes();
        let mut got = p.push(&text[..7]).unwrap();
        got.extend(p.push(&text[7..]).unwrap());
        assert_eq!(got[0].data, "é✓");
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        let mut p = Parser::default();
        assert!(p.push(b"id: 1\nevent: x\n\n").unwrap().is_empty());
        // The id of an undispatched block does not leak into the next event.
        let got = p.push(b"data: d\n\n").unwrap();
        assert_eq!(got[0].id, None);
    }

    #[test]
    fn endless_lines_are_refused() {
        let mut p = Parser::default();
        let big = vec![b'a'; MAX_LINE + 1];
        assert!(p.push(&big).is_err());
    }
}
