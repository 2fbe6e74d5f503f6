//! Redis key names. Everything of one specialist type lives under that type's hash tag,
//! `sb:{<namespace>:<type>}:`, so each script touches one Redis Cluster slot and a deployment's
//! types spread over a cluster's shards. Three kinds of key stand apart:
//! - the directory: one key per id, `sb:{<namespace>/s/<specialist id>}` and
//!   `sb:{<namespace>/t/<subtask id>}`, holding the type whose slot has the record (plain
//!   commands, one key each, so they spread over the slots too);
//! - the deployment's meta hash `sb:{<namespace>}:meta` (rebuild markers) and its live replicas
//!   `sb:{<namespace>}:replicas` (see policy.rs);
//! - the watch channel `sb:{<namespace>}:watch` (pub/sub: not a key, any node takes it).

/// The names of a type's slot's keys after its prefix. Each is written here only: the Lua library
/// gets them from its generated prelude as `K.<name>` (`P .. K.free`, `P .. K.subtask .. id`),
/// and Rust builds them with `Keys::type_key`.
pub mod slot {
    pub const META: &str = "meta";
    pub const SPECIALISTS: &str = "specs";
    pub const FREE: &str = "free";
    pub const LEASES: &str = "leases";
    pub const QUEUE: &str = "queue";
    pub const QUEUE_AGE: &str = "qage";
    pub const QUEUE_ANY: &str = "qany";
    pub const BLOCKED: &str = "blocked";
    pub const DONE: &str = "done";
    pub const EPOCH: &str = "epoch";
    pub const HEAD_SEQ: &str = "hseq";
    pub const TAIL_SEQ: &str = "tseq";
    pub const NOTIFY: &str = "notify";
    pub const OUTBOX: &str = "outbox";
    pub const MINTED: &str = "minted";
    /// Followed by an id or a capability.
    pub const SUBTASK: &str = "t:";
    pub const SPECIALIST: &str = "s:";
    pub const MARK: &str = "mark:";
    pub const MOVED: &str = "moved:";
    pub const DEPENDENTS: &str = "deps:";
    pub const PERFORMANCE: &str = "perf:";
    pub const CAPABLE: &str = "cap:";
    pub const QUEUE_CAPABLE: &str = "qcap:";

    /// The Lua name of each, as the prelude's `K` table has them.
    pub const ALL: [(&str, &str); 23] = [
        ("meta", META),
        ("specs", SPECIALISTS),
        ("free", FREE),
        ("leases", LEASES),
        ("queue", QUEUE),
        ("qage", QUEUE_AGE),
        ("qany", QUEUE_ANY),
        ("blocked", BLOCKED),
        ("done", DONE),
        ("epoch", EPOCH),
        ("hseq", HEAD_SEQ),
        ("tseq", TAIL_SEQ),
        ("notify", NOTIFY),
        ("outbox", OUTBOX),
        ("minted", MINTED),
        ("subtask", SUBTASK),
        ("specialist", SPECIALIST),
        ("mark", MARK),
        ("moved", MOVED),
        ("deps", DEPENDENTS),
        ("perf", PERFORMANCE),
        ("cap", CAPABLE),
        ("qcap", QUEUE_CAPABLE),
    ];
}

/// Key templates outside a slot: `opening + namespace + middle + id + closing`.
pub struct Template {
    pub opening: &'static str,
    pub middle: &'static str,
    pub closing: &'static str,
}

impl Template {
    pub fn key(&self, namespace: &str, id: &str) -> String {
        format!(
            "{}{namespace}{}{id}{}",
            self.opening, self.middle, self.closing
        )
    }
}

/// The prefix of one type's slot.
pub const TYPE_PREFIX: Template = Template {
    opening: "sb:{",
    middle: ":",
    closing: "}:",
};
pub const SUBTASK_DIRECTORY: Template = Template {
    opening: "sb:{",
    middle: "/t/",
    closing: "}",
};
pub const SPECIALIST_DIRECTORY: Template = Template {
    opening: "sb:{",
    middle: "/s/",
    closing: "}",
};

#[derive(Debug, Clone)]
pub struct Keys {
    namespace: String,
}

impl Keys {
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The prefix of every key of one type's slot.
    pub fn type_prefix(&self, specialist_type: &str) -> String {
        TYPE_PREFIX.key(&self.namespace, specialist_type)
    }

    pub fn type_key(&self, specialist_type: &str, name: &str) -> String {
        format!("{}{name}", self.type_prefix(specialist_type))
    }

    /// The KEYS[1] of every script run in the type's slot.
    pub fn type_meta(&self, specialist_type: &str) -> String {
        self.type_key(specialist_type, slot::META)
    }

    /// The type whose slot a meta key names.
    pub fn type_of_meta(&self, meta: &str) -> Option<String> {
        let opened = format!(
            "{}{}{}",
            TYPE_PREFIX.opening, self.namespace, TYPE_PREFIX.middle
        );
        let closed = format!("{}{}", TYPE_PREFIX.closing, slot::META);
        meta.strip_prefix(&opened)?
            .strip_suffix(&closed)
            .map(String::from)
    }

    pub fn subtask_record(&self, specialist_type: &str, subtask_id: &str) -> String {
        self.type_key(specialist_type, &format!("{}{subtask_id}", slot::SUBTASK))
    }

    /// A mark a type keeps of a subtask id (forwarded, or its claim voided).
    pub fn subtask_mark(&self, specialist_type: &str, subtask_id: &str) -> String {
        self.type_key(specialist_type, &format!("{}{subtask_id}", slot::MARK))
    }

    /// Where a specialist id is bound: the type it registers (and keeps its performance) under.
    pub fn specialist_directory(&self, specialist_id: &str) -> String {
        SPECIALIST_DIRECTORY.key(&self.namespace, specialist_id)
    }

    /// Where a subtask's record is: its routed type (its requested type while being forwarded).
    pub fn subtask_directory(&self, subtask_id: &str) -> String {
        SUBTASK_DIRECTORY.key(&self.namespace, subtask_id)
    }

    pub fn deployment_meta(&self) -> String {
        format!("sb:{{{}}}:meta", self.namespace)
    }

    /// The deployment's live replicas (zset: expiry ms of "<fingerprint> <replica id>").
    pub fn replicas(&self) -> String {
        format!("sb:{{{}}}:replicas", self.namespace)
    }

    /// Present (with a lease TTL's expiry) after a replica lost Redis: no lease lapses meanwhile.
    pub fn lapse_hold(&self) -> String {
        format!("sb:{{{}}}:lapse-hold", self.namespace)
    }

    pub fn watch_channel(&self) -> String {
        format!("sb:{{{}}}:watch", self.namespace)
    }

    /// SCAN patterns that together match every key of the deployment (and no other deployment's).
    pub fn patterns(&self) -> [String; 3] {
        let namespace = glob_escape(&self.namespace);
        [
            format!("sb:{{{namespace}}}:*"),
            format!("sb:{{{namespace}:*"),
            format!("sb:{{{namespace}/*"),
        ]
    }
}

fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if matches!(character, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_types_keys_share_one_hash_tag_and_types_do_not() {
        let keys = Keys::new("prod");
        let tag = |key: &str| {
            let open = key.find('{').unwrap();
            let close = open + key[open..].find('}').unwrap();
            key[open + 1..close].to_string()
        };
        assert_eq!(tag(&keys.type_meta("backend")), "prod:backend");
        assert_eq!(tag(&keys.subtask_record("backend", "t1")), "prod:backend");
        assert_ne!(tag(&keys.type_meta("frontend")), "prod:backend");
        assert_eq!(tag(&keys.subtask_directory("t1")), "prod/t/t1");
        assert_eq!(tag(&keys.specialist_directory("s1")), "prod/s/s1");
        assert_eq!(
            keys.type_of_meta(&keys.type_meta("back:end")).as_deref(),
            Some("back:end")
        );
        assert_eq!(keys.type_of_meta("sb:{other:x}:meta"), None);
    }

    #[test]
    fn patterns_cover_the_deployment_only() {
        let keys = Keys::new("a");
        let patterns = keys.patterns();
        assert_eq!(patterns[0], "sb:{a}:*");
        assert_eq!(patterns[1], "sb:{a:*");
        assert_eq!(patterns[2], "sb:{a/*");
        assert_eq!(Keys::new("x*").patterns()[0], "sb:{x\\*}:*");
    }
}
