//! Mutation tests of `query serve`: mutated startup messages, and mutated query messages (simple
//! and extended protocol) sent after a real SCRAM login, over raw sockets. Each must get a
//! PostgreSQL error or a closed connection, never a panic or a dead server; the server answers a
//! real client afterwards. Seeded: `MUTATION_SEED` reproduces a run (printed on failure),
//! `MUTATION_CASES` sets its length.

use crate::serve::{PASSWORD, Server, psql, store};
use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Mutations of PostgreSQL messages, seeded: the shared ones (`testkit::mutation`), and the
/// length field set to something else (the first four bytes of a startup message, bytes 1-4 of
/// the others).
struct Mutator(testkit::mutation::Seeded);

impl Mutator {
    fn below(&mut self, n: usize) -> usize {
        self.0.below(n)
    }

    fn mutate(&mut self, message: &[u8], length_at: usize) -> Vec<u8> {
        if self.below(5) > 0 {
            return self.0.mutate(message);
        }
        let mut out = message.to_vec();
        let lengths = [0u32, 1, 3, 4, 8, 0x7fff_ffff, 0xffff_ffff, 1 << 30];
        let length = lengths[self.below(lengths.len())];
        out[length_at..length_at + 4].copy_from_slice(&length.to_be_bytes());
        out
    }
}

fn cases() -> usize {
    testkit::mutation::cases(40)
}

/// The SQLSTATE of an error message.
fn sqlstate(message: &Message) -> Option<String> {
    use fallible_iterator::FallibleIterator;
    let Message::ErrorResponse(body) = message else {
        return None;
    };
    let mut fields = body.fields();
    while let Ok(Some(field)) = fields.next() {
        if field.type_() == b'C' {
            return Some(String::from_utf8_lossy(field.value_bytes()).into_owned());
        }
    }
    None
}

/// Reads backend messages until `done` says stop, the connection closes or 5 s pass; returns
/// the messages' type bytes. An internal error (SQLSTATE XX000: a panic or a bug) fails.
fn read_until(
    stream: &mut TcpStream,
    buffer: &mut BytesMut,
    done: impl Fn(&Message) -> bool,
) -> Vec<u8> {
    let mut kinds = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        while let Ok(Some(message)) = Message::parse(buffer) {
            assert_ne!(
                sqlstate(&message).as_deref(),
                Some("XX000"),
                "an internal error"
            );
            let kind = match &message {
                Message::ErrorResponse(_) => b'E',
                Message::ReadyForQuery(_) => b'Z',
                Message::AuthenticationSasl(_)
                | Message::AuthenticationSaslContinue(_)
                | Message::AuthenticationSaslFinal(_)
                | Message::AuthenticationOk => b'R',
                _ => b'?',
            };
            kinds.push(kind);
            if done(&message) {
                return kinds;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return kinds,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A session logged in with SCRAM-SHA-256 over a raw socket, ready for a query.
fn logged_in(server: &Server) -> (TcpStream, BytesMut) {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut out = BytesMut::new();
    frontend::startup_message([("user", "logs"), ("database", "logs")], &mut out).unwrap();
    stream.write_all(&out).unwrap();
    let mut buffer = BytesMut::new();
    let mut scram = ScramSha256::new(PASSWORD.as_bytes(), ChannelBinding::unsupported());
    let mut chunk = [0u8; 8192];
    loop {
        let message = loop {
            if let Some(message) = Message::parse(&mut buffer).unwrap() {
                break message;
            }
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "the server closed the login");
            buffer.extend_from_slice(&chunk[..n]);
        };
        out.clear();
        match message {
            Message::AuthenticationSasl(_) => {
                frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out)
                    .unwrap();
            }
            Message::AuthenticationSaslContinue(body) => {
                scram.update(body.data()).unwrap();
                frontend::sasl_response(scram.message(), &mut out).unwrap();
            }
            Message::AuthenticationSaslFinal(body) => scram.finish(body.data()).unwrap(),
            Message::ReadyForQuery(_) => return (stream, buffer),
            Message::ErrorResponse(_) => panic!("the login was refused"),
            _ => {}
        }
        if !out.is_empty() {
            stream.write_all(&out).unwrap();
        }
    }
}

#[test]
fn mutated_startup_and_query_messages_are_errors_and_the_server_goes_on() {
    let mut mutator = Mutator(testkit::mutation::Seeded::from_env());
    let seed = mutator.0.seed();
    let dir = store();
    let server = Server::start(dir.path(), &[]);

    let mut startup = BytesMut::new();
    frontend::startup_message(
        [
            ("user", "logs"),
            ("database", "logs"),
            ("application_name", "m"),
        ],
        &mut startup,
    )
    .unwrap();
    for case in 0..cases() {
        let message = mutator.mutate(&startup, 0);
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = stream.write_all(&message);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        // An error, an authentication request (the mutation left a valid startup) or a close.
        let mut buffer = BytesMut::new();
        let kinds = read_until(&mut stream, &mut buffer, |m| {
            matches!(
                m,
                Message::ErrorResponse(_) | Message::AuthenticationSasl(_)
            )
        });
        assert!(
            kinds.iter().all(|k| matches!(k, b'E' | b'R' | b'?')),
            "startup case {case} (MUTATION_SEED={seed}): {kinds:?}"
        );
    }

    // Query messages, simple and extended, after a real login.
    let mut simple = BytesMut::new();
    frontend::query(
        "SELECT machine, count(*) FROM logs GROUP BY machine",
        &mut simple,
    )
    .unwrap();
    let mut extended = BytesMut::new();
    frontend::parse(
        "s",
        "SELECT count(*) FROM logs WHERE machine = $1",
        [25u32],
        &mut extended,
    )
    .unwrap();
    frontend::bind(
        "p",
        "s",
        [0i16],
        [Some("m1")],
        |value, buf| {
            buf.extend_from_slice(value.unwrap().as_bytes());
            Ok(postgres_protocol::IsNull::No)
        },
        [0i16],
        &mut extended,
    )
    .map_err(|_| ())
    .unwrap();
    frontend::execute("p", 0, &mut extended).unwrap();
    frontend::sync(&mut extended);
    // [answered without an error, answered with one]
    let mut answers = [0usize; 2];
    for case in 0..cases() {
        let (mut stream, mut buffer) = logged_in(&server);
        let message = if case % 2 == 0 {
            mutator.mutate(&simple, 1)
        } else {
            mutator.mutate(&extended, 1)
        };
        let _ = stream.write_all(&message);
        // A Sync after it, so a session still in step answers with ReadyForQuery.
        let mut sync = BytesMut::new();
        frontend::sync(&mut sync);
        let _ = stream.write_all(&sync);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        // Whatever the mutation left: errors (never internal ones), rows, ReadyForQuery, or a
        // closed connection.
        // A message whose framing is broken (a wrong length) leaves nothing to resynchronise
        // on: pgwire closes the connection, as it does for any protocol violation.
        let kinds = read_until(&mut stream, &mut buffer, |_| false);
        answers[usize::from(kinds.contains(&b'E'))] += 1;
    }

    assert!(
        answers[1] > 0,
        "no mutated query got a PostgreSQL error (MUTATION_SEED={seed}): {answers:?}"
    );
    // The server still answers a real client, and nothing panicked.
    let output = psql(&server.conninfo(), &["SELECT count(*) AS n FROM logs"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let log = server.log();
    assert!(!log.contains("panicked"), "MUTATION_SEED={seed}: {log}");
}

/// A data page damaged so that the reader fails on it (found by trying bytes in the file's data
/// pages until `query` says the file is damaged): through `query serve` the session gets
/// SQLSTATE XX001 naming the file, and the server goes on.
#[test]
fn a_damaged_file_is_xx001_naming_it_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("date=2026-01-01/hour=00/m1.parquet");
    let mut rows = crate::fixtures::records();
    logrecord::parquet_file::write(&file, &mut rows).unwrap();
    let original = std::fs::read(&file).unwrap();
    let sql = "SELECT count(*), max(message), max(path), sum(latency_us) FROM logs";
    let damaged = (4..original.len() / 2).step_by(97).find(|&at| {
        let mut bytes = original.clone();
        bytes[at] = !bytes[at];
        std::fs::write(&file, &bytes).unwrap();
        let output = crate::fixtures::query(dir.path(), &[sql]);
        String::from_utf8_lossy(&output.stderr).contains("m1.parquet: the file is damaged")
    });
    assert!(
        damaged.is_some(),
        "no byte of the data pages damaged the file"
    );
    let server = Server::start(dir.path(), &[]);
    let mut command = std::process::Command::new("psql");
    command.args([
        "-X",
        "-v",
        "VERBOSITY=verbose",
        &server.conninfo(),
        "-c",
        sql,
    ]);
    let output = command
        .output()
        .expect("psql: run scripts/install-test-deps");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ERROR:  XX001: ") && stderr.contains("m1.parquet: the file is damaged"),
        "{stderr}"
    );
    let after = psql(&server.conninfo(), &["SELECT 1 AS one"]);
    assert_eq!(String::from_utf8_lossy(&after.stdout), "one\n1\n");
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
