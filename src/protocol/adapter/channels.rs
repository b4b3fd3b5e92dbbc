//! Redis channel names: where a broadcast, request or response is published, what to subscribe
//! to, and which room a received broadcast's channel names.

use std::borrow::Cow;

/// The Redis channels of one namespace, named as Node's classic adapter names them.
/// Build it once per namespace: [`Channels::room_of`] runs for every received broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    broadcast: String,
    request: String,
    response: String,
    pattern: String,
}

impl Channels {
    /// The channels for `prefix` (usually [`DEFAULT_PREFIX`](super::DEFAULT_PREFIX)) and the
    /// namespace `nsp` (e.g. `/`).
    pub fn new(prefix: &str, nsp: &str) -> Self {
        Channels {
            broadcast: format!("{prefix}#{nsp}#"),
            request: format!("{prefix}-request#{nsp}#"),
            response: format!("{prefix}-response#{nsp}#"),
            // Node does not escape, so a namespace with glob characters would also match other
            // namespaces' channels; escaping makes the pattern match this namespace only.
            pattern: format!("{}#{}#*", glob_escape(prefix), glob_escape(nsp)),
        }
    }

    /// `prefix#nsp#`: broadcasts to the whole namespace or to several rooms.
    pub fn broadcast(&self) -> &str {
        &self.broadcast
    }

    /// `prefix#nsp#room#`: broadcasts to exactly one room.
    pub fn room(&self, room: &str) -> String {
        format!("{}{room}#", self.broadcast)
    }

    /// Where a broadcast to `rooms` is published: the room's channel when it targets exactly one
    /// room (Node counts distinct rooms, it holds them in a Set), else the namespace channel.
    pub fn publish_channel(&self, rooms: &[String]) -> Cow<'_, str> {
        match rooms.split_first() {
            Some((first, rest)) if rest.iter().all(|room| room == first) => {
                Cow::Owned(self.room(first))
            }
            _ => Cow::Borrowed(&self.broadcast),
        }
    }

    /// `prefix-request#nsp#`: requests (SUBSCRIBE, and PUBSUB NUMSUB counts the servers).
    pub fn request(&self) -> &str {
        &self.request
    }

    /// `prefix-response#nsp#`: responses, by default.
    pub fn response(&self) -> &str {
        &self.response
    }

    /// `prefix-response#nsp#uid#`: responses for the node `uid` when Node's
    /// `publishOnSpecificResponseChannel` is on.
    pub fn specific_response(&self, uid: &str) -> String {
        format!("{}{uid}#", self.response)
    }

    /// `prefix#nsp#*`, glob characters of prefix and nsp escaped: the PSUBSCRIBE pattern that
    /// receives both the namespace channel and every room channel.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The room a broadcast received on `channel` targets, with Node's
    /// `channel.slice(prefix.length, -1)` semantics: `Some("")` for the namespace channel,
    /// `Some(room)` for a room channel, `None` for a channel of another namespace. Like Node, the
    /// last character is dropped whatever it is.
    pub fn room_of<'c>(&self, channel: &'c str) -> Option<&'c str> {
        let rest = channel.strip_prefix(self.broadcast.as_str())?;
        let mut chars = rest.chars();
        chars.next_back();
        Some(chars.as_str())
    }
}

fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::adapter::testdata::strings;
    use crate::protocol::adapter::DEFAULT_PREFIX;

    #[test]
    fn channels_are_named_like_node() {
        let root = Channels::new(DEFAULT_PREFIX, "/");
        assert_eq!(root.broadcast(), "socket.io#/#");
        assert_eq!(root.room("room1"), "socket.io#/#room1#");
        assert_eq!(root.request(), "socket.io-request#/#");
        assert_eq!(root.response(), "socket.io-response#/#");
        assert_eq!(
            root.specific_response("b3oKUz"),
            "socket.io-response#/#b3oKUz#"
        );
        assert_eq!(root.pattern(), "socket.io#/#*");
        let admin = Channels::new(DEFAULT_PREFIX, "/admin");
        assert_eq!(admin.broadcast(), "socket.io#/admin#");
        assert_eq!(admin.pattern(), "socket.io#/admin#*");
        let custom = Channels::new("app", "/chat");
        assert_eq!(custom.request(), "app-request#/chat#");
    }

    #[test]
    fn pattern_escapes_glob_characters() {
        let channels = Channels::new("my*key", r"/a?[b]\");
        assert_eq!(channels.pattern(), r"my\*key#/a\?\[b\]\\#*");
        // The channels themselves stay literal.
        assert_eq!(channels.broadcast(), r"my*key#/a?[b]\#");
    }

    #[test]
    fn room_of_follows_node_slice() {
        let root = Channels::new(DEFAULT_PREFIX, "/");
        assert_eq!(root.room_of("socket.io#/#"), Some(""));
        assert_eq!(root.room_of("socket.io#/#room1#"), Some("room1"));
        assert_eq!(root.room_of("socket.io#/#a#b#"), Some("a#b"));
        assert_eq!(root.room_of("socket.io#/#salle-é#"), Some("salle-é"));
        assert_eq!(root.room_of("socket.io#/admin#"), None);
        assert_eq!(root.room_of("socket.io-request#/#"), None);
        // Node drops the last character whatever it is.
        assert_eq!(root.room_of("socket.io#/#room1é"), Some("room1"));
    }

    #[test]
    fn publish_channel_targets_a_room_only_for_exactly_one_room() {
        let root = Channels::new(DEFAULT_PREFIX, "/");
        assert_eq!(root.publish_channel(&[]), "socket.io#/#");
        assert_eq!(
            root.publish_channel(&strings(&["room1"])),
            "socket.io#/#room1#"
        );
        assert_eq!(root.publish_channel(&strings(&["a", "b"])), "socket.io#/#");
        assert_eq!(
            root.publish_channel(&strings(&["a", "a"])),
            "socket.io#/#a#"
        );
    }
}
