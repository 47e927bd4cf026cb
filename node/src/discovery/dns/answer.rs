//! What the DNS server says to one message, without IO: a service name gets its VIP, a
//! name under `.knit` that no service has gets NXDOMAIN, and anything else is for the
//! host's resolvers. Messages are read and written with `hickory-proto`.

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};

use crate::discovery::directory::Directory;

/// How long resolvers may keep an answer, in seconds: a service's VIP is stable for its
/// life, and a removed service's name should vanish soon.
pub(crate) const TTL_S: u32 = 5;
/// The largest UDP answer this server sends: answers here hold one record.
const UDP_PAYLOAD_MAX: u16 = 1232;

/// The server's answer to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Answered here: the message to send back, and what it said.
    Local(Vec<u8>, Outcome),
    /// Not a service name: the host's resolvers answer it.
    Forward,
    /// Not a question (an answer, or not DNS at all): nothing is sent back.
    Ignore,
}

/// What a local answer said, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Outcome {
    /// A service's VIP.
    Found,
    /// A service's name, asked for a type it has none of (AAAA, say).
    NoData,
    /// A name under `.knit` that no service has.
    NxDomain,
    /// A question this server cannot read or does not serve.
    Refused,
}

impl Outcome {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Found => "found",
            Self::NoData => "nodata",
            Self::NxDomain => "nxdomain",
            Self::Refused => "refused",
        }
    }
}

/// The answer to `query`, a DNS message as it came from a client.
pub(crate) fn answer(query: &[u8], directory: &Directory) -> Answer {
    let message = match Message::from_vec(query) {
        Ok(message) => message,
        // Not readable: a FORMERR to its id, when it has a header and claims to ask.
        Err(_) => return unreadable(query),
    };
    if message.metadata.message_type != MessageType::Query {
        return Answer::Ignore;
    }
    let Some(question) = message.queries.first() else {
        return Answer::Local(
            reply(&message, ResponseCode::FormErr, None),
            Outcome::Refused,
        );
    };
    let name = question.name().to_ascii();
    let ours = directory.lookup(&name);
    if ours.is_none() && !Directory::is_ours(&name) {
        return Answer::Forward;
    }
    if message.metadata.op_code != OpCode::Query || message.queries.len() != 1 {
        return Answer::Local(
            reply(&message, ResponseCode::NotImp, None),
            Outcome::Refused,
        );
    }
    let Some(vip) = ours else {
        return Answer::Local(
            reply(&message, ResponseCode::NXDomain, None),
            Outcome::NxDomain,
        );
    };
    let wants_a = question.query_class() == DNSClass::IN
        && matches!(question.query_type(), RecordType::A | RecordType::ANY);
    if !wants_a {
        return Answer::Local(
            reply(&message, ResponseCode::NoError, None),
            Outcome::NoData,
        );
    }
    let record = Record::from_rdata(question.name().clone(), TTL_S, RData::A(A(vip)));
    Answer::Local(
        reply(&message, ResponseCode::NoError, Some(record)),
        Outcome::Found,
    )
}

/// A SERVFAIL to `query` (the host's resolvers did not answer), or `None` when it does
/// not read as a question.
pub(crate) fn server_failure(query: &[u8]) -> Option<Vec<u8>> {
    let message = Message::from_vec(query).ok()?;
    (message.metadata.message_type == MessageType::Query)
        .then(|| reply(&message, ResponseCode::ServFail, None))
}

/// The id of a DNS message (its first two bytes), to match an answer to its question.
pub(crate) fn id_of(message: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*message.first()?, *message.get(1)?]))
}

/// A FORMERR for a message that does not parse, if its header says it is a question.
fn unreadable(query: &[u8]) -> Answer {
    let (Some(id), Some(flags)) = (id_of(query), query.get(2)) else {
        return Answer::Ignore;
    };
    if flags & 0x80 != 0 {
        // QR set: an answer, never answered back.
        return Answer::Ignore;
    }
    let message = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
    match message.to_vec() {
        Ok(bytes) => Answer::Local(bytes, Outcome::Refused),
        Err(_) => Answer::Ignore,
    }
}

/// The answer to `query` with `code` and at most one record; the question is echoed, and
/// EDNS is answered with EDNS.
fn reply(query: &Message, code: ResponseCode, record: Option<Record>) -> Vec<u8> {
    let mut message = Message::response(query.metadata.id, query.metadata.op_code);
    message.metadata = Metadata::response_from_request(&query.metadata);
    message.metadata.authoritative = true;
    message.metadata.recursion_available = true;
    message.metadata.response_code = code;
    message.add_queries(query.queries.iter().cloned());
    if let Some(record) = record {
        message.add_answer(record);
    }
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(UDP_PAYLOAD_MAX);
        message.set_edns(edns);
    }
    // Writing a message of one question and one A record cannot fail; an empty answer
    // (which the client reads as no answer, and retries) is the fallback.
    message.to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use knit_scheduler::ServiceSpec;

    use super::*;

    fn directory() -> Directory {
        let vips = BTreeMap::from([("api".to_owned(), Ipv4Addr::new(10, 213, 0, 7))]);
        let specs = BTreeMap::from([("api".to_owned(), ServiceSpec::docker("api", "img"))]);
        Directory::new(Some(Ipv4Addr::new(10, 213, 0, 1)), &vips, &specs)
    }

    fn question(name: &str, kind: RecordType) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = 4242;
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        message.to_vec().unwrap()
    }

    fn local(answer: Answer) -> (Message, Outcome) {
        match answer {
            Answer::Local(bytes, outcome) => (Message::from_vec(&bytes).unwrap(), outcome),
            other => panic!("not answered here: {other:?}"),
        }
    }

    #[test]
    fn a_service_name_gets_its_vip() {
        for name in ["api", "api.knit.", "API.knit"] {
            let (reply, outcome) = local(answer(&question(name, RecordType::A), &directory()));
            assert_eq!(outcome, Outcome::Found);
            assert_eq!(reply.metadata.id, 4242);
            assert_eq!(reply.metadata.message_type, MessageType::Response);
            assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
            assert!(reply.metadata.recursion_desired && reply.metadata.authoritative);
            assert_eq!(reply.queries.len(), 1, "the question is echoed");
            assert_eq!(reply.answers.len(), 1);
            let record = &reply.answers[0];
            assert_eq!(record.ttl, TTL_S);
            assert_eq!(record.data, RData::A(A(Ipv4Addr::new(10, 213, 0, 7))));
        }
    }

    #[test]
    fn other_types_of_a_service_name_are_empty_and_unknown_services_absent() {
        let (reply, outcome) = local(answer(&question("api", RecordType::AAAA), &directory()));
        assert_eq!(outcome, Outcome::NoData);
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.answers.is_empty());
        let (reply, outcome) = local(answer(&question("nope.knit", RecordType::A), &directory()));
        assert_eq!(outcome, Outcome::NxDomain);
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn other_names_go_to_the_host_resolvers_and_answers_are_never_answered() {
        let d = directory();
        assert_eq!(
            answer(&question("example.com", RecordType::A), &d),
            Answer::Forward
        );
        assert_eq!(answer(&question("web", RecordType::A), &d), Answer::Forward);
        let (reply, _) = local(answer(&question("api", RecordType::A), &d));
        assert_eq!(answer(&reply.to_vec().unwrap(), &d), Answer::Ignore);
    }

    #[test]
    fn garbage_gets_a_format_error_or_nothing() {
        let d = directory();
        assert_eq!(answer(&[], &d), Answer::Ignore);
        assert_eq!(answer(&[1], &d), Answer::Ignore);
        let (reply, outcome) = local(answer(&[0x12, 0x34, 0x01, 0x00, 0xff], &d));
        assert_eq!(outcome, Outcome::Refused);
        assert_eq!(reply.metadata.id, 0x1234);
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(answer(&[0x12, 0x34, 0x81, 0x00, 0xff], &d), Answer::Ignore);
        // Any bytes at all: an answer or nothing, never a panic.
        for seed in 0u32..2_000 {
            let len = (seed % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| (seed.wrapping_mul(2_654_435_761).rotate_left(i as u32) >> 7) as u8)
                .collect();
            let _ = answer(&bytes, &d);
        }
    }

    #[test]
    fn a_failed_forward_is_a_server_failure_to_the_same_question() {
        let failure = server_failure(&question("example.com", RecordType::A)).unwrap();
        let reply = Message::from_vec(&failure).unwrap();
        assert_eq!(reply.metadata.id, 4242);
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(id_of(&failure), Some(4242));
        assert!(server_failure(b"junk").is_none());
    }
}
