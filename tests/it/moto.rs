//! moto's server for one test, and the front the tests put before it: the
//! SDK talks to the front, which holds every request to AWS's documented
//! limits (`limits.rs`), counts calls and calls in flight, fails, holds or
//! throttles the calls a test asks it to, pages ECS's List calls as ECS
//! does, and answers GetTaskProtection and UpdateTaskProtection (which
//! moto does not implement).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ecs::Client;
use aws_sdk_ecs::config::{BehaviorVersion, Credentials, Region};

use crate::repo;

/// A moto server for one test; stopped when dropped.
pub(crate) struct Moto {
    child: Child,
    port: u16,
    /// The front the SDK talks to (see [`front`]).
    front: u16,
    /// What the front adds to moto.
    front_state: std::sync::Arc<Front>,
}

/// What the front in front of moto answers itself.
#[derive(Debug, Default)]
pub(crate) struct Front {
    /// Tasks reported as protected from scale-in.
    protected: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// GetTaskProtection calls answered.
    protection_asked: std::sync::atomic::AtomicUsize,
    /// How many of the next attempts of an operation of a JSON-protocol
    /// service (lower case, such as `describeservices`) to refuse with
    /// ThrottlingException.
    throttle: std::sync::Mutex<std::collections::BTreeMap<String, usize>>,
    /// How long to hold each request of an operation before passing it on.
    delay: std::sync::Mutex<std::collections::BTreeMap<String, Duration>>,
    /// Requests received, per operation (of a JSON or query protocol).
    calls: std::sync::Mutex<std::collections::BTreeMap<String, usize>>,
    /// Requests being answered now, and the most ever at once, per operation.
    in_flight: std::sync::Mutex<std::collections::BTreeMap<String, (usize, usize)>>,
    /// Calls of an operation to answer with an error instead of moto.
    fail: std::sync::Mutex<std::collections::BTreeMap<String, Failure>>,
    /// Requests past a documented limit (see `limits.rs`), refused as AWS
    /// refuses them; a test that made one fails when its moto is dropped.
    broken: std::sync::Mutex<Vec<String>>,
    /// Fields DescribeServices answers for a service that moto does not
    /// keep (such as `availabilityZoneRebalancing` and the service's
    /// `events`), per service name: merged into moto's answer.
    service_fields: std::sync::Mutex<std::collections::BTreeMap<String, serde_json::Value>>,
    /// Fields the front adds to DescribeTasks answers, by task ARN: the
    /// `stoppingAt` of each task stopped through it.
    task_fields: std::sync::Mutex<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// Which calls of an operation fail, and how.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// From this call (1 for the first one received)...
    pub(crate) from: usize,
    /// ...this many calls in a row.
    pub(crate) times: usize,
    /// The HTTP status and the error code, such as 500 `ServerException`.
    pub(crate) status: u16,
    pub(crate) code: &'static str,
}

impl Moto {
    pub(crate) fn start() -> Moto {
        let server = std::env::var_os("STEVEDORE_MOTO_SERVER")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| repo(".venv/bin/moto_server"));
        assert!(
            server.exists(),
            "{} not found: run `scripts/test.sh`, which installs moto into .venv",
            server.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // Services report their deployment COMPLETED (moto starts no tasks).
            .env("MOTO_ECS_SERVICE_RUNNING", "100000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let front_state = std::sync::Arc::<Front>::default();
        let moto = Moto {
            child,
            port,
            front: front(port, std::sync::Arc::clone(&front_state)),
            front_state,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Tasks stay as they are told, instead of advancing on every describe.
        moto.post("/moto-api/state-manager/set-transition", r#"{"model_name":"ecs::task","transition":{"progression":"manual","times":1000000000}}"#);
        moto
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.front)
    }

    /// No task is protected any more.
    pub(crate) fn unprotect_all(&self) {
        self.front_state.protected.lock().unwrap().clear();
    }

    /// The tasks protected now (by the test or through UpdateTaskProtection).
    pub(crate) fn protected(&self) -> std::collections::BTreeSet<String> {
        self.front_state.protected.lock().unwrap().clone()
    }

    pub(crate) fn protect(&self, task: &str) {
        self.front_state
            .protected
            .lock()
            .unwrap()
            .insert(task.to_owned());
    }

    /// DescribeServices answers these fields for `service` from now on,
    /// as ECS would (moto knows neither AZ rebalancing nor service events).
    pub(crate) fn service_fields(&self, service: &str, fields: serde_json::Value) {
        self.front_state
            .service_fields
            .lock()
            .unwrap()
            .insert(service.to_owned(), fields);
    }

    pub(crate) fn protection_asked(&self) -> usize {
        self.front_state
            .protection_asked
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The next `attempts` attempts of an operation (of ECS, DynamoDB, ...)
    /// are throttled.
    pub(crate) fn throttle(&self, operation: &str, attempts: usize) {
        self.front_state
            .throttle
            .lock()
            .unwrap()
            .insert(operation.to_ascii_lowercase(), attempts);
    }

    /// Each request of an operation waits this long before it is answered.
    pub(crate) fn delay(&self, operation: &str, by: Duration) {
        self.front_state
            .delay
            .lock()
            .unwrap()
            .insert(operation.to_ascii_lowercase(), by);
    }

    /// Calls `failure.from` to `failure.from + failure.times - 1` of an
    /// operation (counted from the first request the front received) are
    /// answered with the error, not by moto.
    pub(crate) fn fail(&self, operation: &str, failure: Failure) {
        self.front_state
            .fail
            .lock()
            .unwrap()
            .insert(operation.to_ascii_lowercase(), failure);
    }

    /// The most requests of an operation the front ever held at once.
    pub(crate) fn most_in_flight(&self, operation: &str) -> usize {
        self.front_state
            .in_flight
            .lock()
            .unwrap()
            .get(&operation.to_ascii_lowercase())
            .map_or(0, |(_, most)| *most)
    }

    /// Requests received so far, per operation (lower case).
    pub(crate) fn all_calls(&self) -> std::collections::BTreeMap<String, usize> {
        self.front_state.calls.lock().unwrap().clone()
    }

    /// Requests of an operation received so far.
    pub(crate) fn calls(&self, operation: &str) -> usize {
        self.front_state
            .calls
            .lock()
            .unwrap()
            .get(&operation.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn post(&self, path: &str, body: &str) -> String {
        self.request(path, "application/json", "", body)
    }

    fn request(&self, path: &str, content_type: &str, extra_headers: &str, body: &str) -> String {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        // moto's server (Werkzeug) under a loaded machine now and then
        // resets a connection: a reset before any response is tried again.
        let mut attempts = 0;
        let response = loop {
            attempts += 1;
            let mut response = vec![];
            let sent = TcpStream::connect(("127.0.0.1", self.port)).and_then(|mut stream| {
                stream.write_all(request.as_bytes())?;
                stream.read_to_end(&mut response)
            });
            match sent {
                Ok(_) => break response,
                Err(_) if response.windows(4).any(|w| w == b"\r\n\r\n") => break response,
                Err(e) if attempts < 3 => eprintln!("{path}: {e}; trying again"),
                Err(e) => panic!("{path}: {e}"),
            }
        };
        let response = String::from_utf8_lossy(&response).into_owned();
        let status = response.split_whitespace().nth(1).unwrap_or("");
        assert!(status.starts_with('2'), "{path}: {response}");
        response
    }

    /// A call of a service's query API (EC2, IAM, CloudFormation), for
    /// what the tests need and the crates they use have no client for. The
    /// credential scope tells moto which service is meant; it does not check
    /// signatures. `parameters` are form-encoded here.
    pub(crate) fn query(&self, service: &str, parameters: &[(&str, &str)]) -> String {
        self.query_as(service, &Account::home(), parameters)
    }

    /// The same, as `account` (moto tells accounts and regions apart by
    /// the access key and the credential scope).
    pub(crate) fn query_as(
        &self,
        service: &str,
        account: &Account,
        parameters: &[(&str, &str)],
    ) -> String {
        let encode = |text: &str| -> String {
            text.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect()
        };
        let body: Vec<String> = parameters
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        let auth = format!(
            "Authorization: AWS4-HMAC-SHA256 Credential={}/20260101/{}/{service}/aws4_request, SignedHeaders=host, Signature=0\r\n",
            account.access_key, account.region
        );
        self.request(
            "/",
            "application/x-www-form-urlencoded",
            &auth,
            &body.join("&"),
        )
    }

    /// `count` EC2 instances in a zone, in one RunInstances call.
    pub(crate) fn ec2_instances(&self, zone: &str, count: usize) -> Vec<String> {
        self.ec2_instances_as(&Account::home(), zone, count)
    }

    /// The same, in another account or region.
    pub(crate) fn ec2_instances_as(
        &self,
        account: &Account,
        zone: &str,
        count: usize,
    ) -> Vec<String> {
        let count = count.to_string();
        let response = self.query_as(
            "ec2",
            account,
            &[
                ("Action", "RunInstances"),
                ("Version", "2016-11-15"),
                ("ImageId", "ami-12c6146b"),
                ("MinCount", &count),
                ("MaxCount", &count),
                ("InstanceType", "m5.xlarge"),
                ("Placement.AvailabilityZone", zone),
            ],
        );
        let ids: Vec<String> = response
            .split("<instanceId>")
            .skip(1)
            .filter_map(|rest| Some(rest[..rest.find('<')?].to_owned()))
            .collect();
        assert_eq!(ids.len().to_string(), count, "{response}");
        ids
    }

    pub(crate) fn client(&self) -> Client {
        self.client_as(&Account::home())
    }

    /// An ECS client of another account or region.
    pub(crate) fn client_as(&self, account: &Account) -> Client {
        let config = aws_sdk_ecs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(self.url())
            .region(Region::new(account.region.clone()))
            .credentials_provider(Credentials::new(
                account.access_key.clone(),
                "test",
                account.session_token.clone(),
                None,
                "static",
            ))
            .build();
        Client::from_conf(config)
    }

    /// The credentials of `role` (in another account), assumed through
    /// moto's STS, used in `region`.
    pub(crate) fn assume(&self, role: &str, region: &str) -> Account {
        let response = self.query(
            "sts",
            &[
                ("Action", "AssumeRole"),
                ("Version", "2011-06-15"),
                ("RoleArn", role),
                ("RoleSessionName", "stevedore-test"),
            ],
        );
        let field = |name: &str| {
            response
                .split(&format!("<{name}>"))
                .nth(1)
                .and_then(|rest| rest.split(&format!("</{name}>")).next())
                .unwrap_or_else(|| panic!("no {name} in {response}"))
                .to_owned()
        };
        Account {
            access_key: field("AccessKeyId"),
            session_token: Some(field("SessionToken")),
            region: region.to_owned(),
        }
    }
}

/// Whom a test's call is made as, and where: moto keeps each account's
/// and region's resources apart.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub(crate) access_key: String,
    pub(crate) session_token: Option<String>,
    pub(crate) region: String,
}

impl Account {
    /// The test's own credentials (moto's default account) in us-east-1.
    pub(crate) fn home() -> Account {
        Account::home_in("us-east-1")
    }

    /// The test's own credentials in another region.
    pub(crate) fn home_in(region: &str) -> Account {
        Account {
            access_key: "test".into(),
            session_token: None,
            region: region.into(),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let broken = self.front_state.broken.lock().unwrap();
        if !std::thread::panicking() {
            assert!(
                broken.is_empty(),
                "requests AWS would refuse:\n{}",
                broken.join("\n")
            );
        }
    }
}

/// Reads one HTTP request (head and Content-Length body) from a stream.
fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut request = vec![];
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
        if let Some(head_end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&request[..head_end]);
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if request.len() >= head_end + 4 + length {
                break;
            }
        }
    }
    request
}

/// The same HTTP message with `Connection: close` as its only connection header.
fn closing(message: &[u8]) -> Vec<u8> {
    with_header(message, "Connection", "close")
}

/// The same HTTP message with `name: value` as its only `name` header.
fn with_header(message: &[u8], name: &str, value: &str) -> Vec<u8> {
    let Some(head_end) = message.windows(4).position(|w| w == b"\r\n\r\n") else {
        return message.to_vec();
    };
    let head = String::from_utf8_lossy(&message[..head_end]);
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let mut out: String = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| format!("{l}\r\n"))
        .collect();
    out.push_str(&format!("{name}: {value}\r\n\r\n"));
    let mut out = out.into_bytes();
    out.extend_from_slice(&message[head_end + 4..]);
    out
}

/// moto's Describe answer with `fields` merged into the objects of the
/// list `list` whose `key` names them (DescribeServices: `services` by
/// `serviceName`), the whole answer as is if it is not JSON.
fn with_fields(
    response: &[u8],
    (list, key): (&str, &str),
    fields: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Vec<u8> {
    let Some(head_end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return response.to_vec();
    };
    let Ok(mut body) = serde_json::from_slice::<serde_json::Value>(&response[head_end + 4..])
    else {
        return response.to_vec();
    };
    for object in body[list].as_array_mut().into_iter().flatten() {
        let name = object[key].as_str().unwrap_or_default().to_owned();
        if let (Some(extra), Some(object)) = (
            fields.get(&name).and_then(|f| f.as_object()),
            object.as_object_mut(),
        ) {
            for (k, v) in extra {
                object.insert(k.clone(), v.clone());
            }
        }
    }
    let body = body.to_string();
    let mut message = response[..head_end + 4].to_vec();
    message.extend_from_slice(body.as_bytes());
    with_header(&message, "Content-Length", &body.len().to_string())
}

/// Sends one request to moto and returns its whole response.
fn exchange(moto_port: u16, request: &[u8]) -> Vec<u8> {
    let mut response = vec![];
    if let Ok(mut moto) = TcpStream::connect(("127.0.0.1", moto_port)) {
        let _ = moto.write_all(&closing(request));
        let _ = moto.read_to_end(&mut response);
    }
    response
}

/// An ECS List call, paged as ECS pages it: moto returns every ARN at
/// once, whatever `maxResults` says, so the front asks moto for all of
/// them and answers one page of `maxResults` (ECS's default when it is
/// absent), with a `nextToken` of its own while more are left. `None` for
/// other operations, or when moto fails (its answer is passed on as is).
fn paged(operation: &str, moto_port: u16, request: &[u8], head_end: usize) -> Option<String> {
    let (key, default_page) = match operation {
        "listtasks" => ("taskArns", 100),
        "listservices" => ("serviceArns", 10),
        "listcontainerinstances" => ("containerInstanceArns", 100),
        _ => return None,
    };
    let mut asked: serde_json::Value =
        serde_json::from_slice(&request[(head_end + 4).min(request.len())..]).ok()?;
    let page = asked["maxResults"]
        .as_u64()
        .map_or(default_page, |n| n as usize);
    let from: usize = match asked["nextToken"].as_str() {
        Some(token) => token.strip_prefix("front-")?.parse().ok()?,
        None => 0,
    };
    let asked_of_moto = asked.as_object_mut()?;
    asked_of_moto.remove("maxResults");
    asked_of_moto.remove("nextToken");
    let body = asked.to_string();
    let head: String = String::from_utf8_lossy(&request[..head_end])
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let request = format!("{head}Content-Length: {}\r\n\r\n{body}", body.len());
    let response = exchange(moto_port, request.as_bytes());
    let response_head_end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    if !response.starts_with(b"HTTP/1.1 200") && !response.starts_with(b"HTTP/1.0 200") {
        return None;
    }
    let all: serde_json::Value = serde_json::from_slice(&response[response_head_end + 4..]).ok()?;
    let arns = all[key].as_array()?;
    let end = (from + page).min(arns.len());
    let mut out = serde_json::json!({ key: arns[from.min(end)..end] });
    if end < arns.len() {
        out["nextToken"] = format!("front-{end}").into();
    }
    Some(out.to_string())
}

/// One request received and not yet answered, counted in
/// [`Front::in_flight`] while it lives.
struct InFlight<'a> {
    front: &'a Front,
    operation: String,
}

impl<'a> InFlight<'a> {
    fn enter(front: &'a Front, operation: &str) -> InFlight<'a> {
        let mut all = front.in_flight.lock().unwrap();
        let (now, most) = all.entry(operation.to_owned()).or_default();
        *now += 1;
        *most = (*most).max(*now);
        InFlight {
            front,
            operation: operation.to_owned(),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some((now, _)) = self
            .front
            .in_flight
            .lock()
            .unwrap()
            .get_mut(&self.operation)
        {
            *now -= 1;
        }
    }
}

/// Answers a Get/UpdateTaskProtection call as ECS does.
fn answer_protected_tasks(stream: &mut TcpStream, tasks: Vec<serde_json::Value>) {
    let body = serde_json::json!({"protectedTasks": tasks, "failures": []}).to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A front for moto. It refuses a request past a documented limit (see
/// `limits.rs`) as AWS does; counts each operation's requests, and the most
/// in flight at once; holds, fails (the Nth call, any status) or throttles
/// (HTTP 400, ThrottlingException, as ECS does) the calls the test asks it
/// to; pages ECS's List calls as ECS does (moto returns everything at
/// once); answers GetTaskProtection, which moto 5.2.5 does not implement
/// (it answers HTTP 500), from the set of protected tasks the test sets, in
/// the documented response shape; every other request goes to moto
/// unchanged.
/// Each connection carries one request.
fn front(moto_port: u16, state: std::sync::Arc<Front>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let state = std::sync::Arc::clone(&state);
            std::thread::spawn(move || {
                let request = read_request(&mut stream);
                let head_end = request
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .unwrap_or(request.len());
                let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
                let body = &request[(head_end + 4).min(request.len())..];
                // The operation: of a JSON-protocol service from its target,
                // such as `amazonec2containerservicev20141113.describeservices`;
                // of a query-protocol one from the form's `Action`.
                let form = String::from_utf8_lossy(body).to_ascii_lowercase();
                let operation = head
                    .split("x-amz-target: ")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|target| target.rsplit('.').next())
                    .or_else(|| {
                        form.split('&')
                            .find_map(|pair| pair.strip_prefix("action="))
                    })
                    .unwrap_or("")
                    .to_owned();
                let operation = operation.as_str();
                let nth = {
                    let mut calls = state.calls.lock().unwrap();
                    let n = calls.entry(operation.to_owned()).or_default();
                    *n += 1;
                    *n
                };
                // In flight until the front starts to answer: once the client
                // has its answer it may send the next request, which could
                // otherwise arrive before this thread has counted this one out.
                let in_flight = InFlight::enter(&state, operation);
                let broken = crate::limits::broken(operation, body);
                if !broken.is_empty() {
                    drop(in_flight);
                    let message = broken.join("; ");
                    state.broken.lock().unwrap().extend(broken);
                    let body =
                        serde_json::json!({"__type": "ValidationException", "message": message})
                            .to_string();
                    let _ = write!(
                        stream,
                        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    return;
                }
                let delay = state.delay.lock().unwrap().get(operation).copied();
                if let Some(delay) = delay {
                    std::thread::sleep(delay);
                }
                drop(in_flight);
                let failure = state
                    .fail
                    .lock()
                    .unwrap()
                    .get(operation)
                    .filter(|f| (f.from..f.from + f.times).contains(&nth))
                    .cloned();
                if let Some(f) = failure {
                    let body = serde_json::json!({"__type": f.code, "message": format!("the front failed call {nth}")}).to_string();
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {} Failed\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        f.status,
                        body.len()
                    );
                    return;
                }
                let throttled = state
                    .throttle
                    .lock()
                    .unwrap()
                    .get_mut(operation)
                    .filter(|left| **left > 0)
                    .map(|left| *left -= 1)
                    .is_some();
                if throttled {
                    let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    return;
                }
                if operation == "updatetaskprotection" {
                    let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                    let enabled = body["protectionEnabled"].as_bool().unwrap_or(false);
                    let mut protected = state.protected.lock().unwrap();
                    let tasks: Vec<serde_json::Value> = body["tasks"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.as_str())
                        .map(|t| {
                            if enabled {
                                protected.insert(t.to_owned());
                            } else {
                                protected.remove(t);
                            }
                            serde_json::json!({"taskArn": t, "protectionEnabled": enabled})
                        })
                        .collect();
                    answer_protected_tasks(&mut stream, tasks);
                    return;
                }
                if operation == "gettaskprotection" {
                    state
                        .protection_asked
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                    let protected = state.protected.lock().unwrap();
                    let tasks: Vec<serde_json::Value> = body["tasks"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.as_str())
                        .map(|t| serde_json::json!({"taskArn": t, "protectionEnabled": protected.contains(t)}))
                        .collect();
                    answer_protected_tasks(&mut stream, tasks);
                    return;
                }
                if let Some(page) = paged(operation, moto_port, &request, head_end) {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                        page.len()
                    );
                    return;
                }
                if operation == "stoptask" {
                    // ECS says when a stop was asked for (`stoppingAt`); moto does not.
                    let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                    if let Some(task) = body["task"].as_str() {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap()
                            .as_secs_f64();
                        state
                            .task_fields
                            .lock()
                            .unwrap()
                            .insert(task.to_owned(), serde_json::json!({"stoppingAt": now}));
                    }
                }
                let mut response = exchange(moto_port, &request);
                let added = match operation {
                    "describeservices" => {
                        Some((("services", "serviceName"), &state.service_fields))
                    }
                    "describetasks" => Some((("tasks", "taskArn"), &state.task_fields)),
                    _ => None,
                };
                if let Some((list, fields)) = added {
                    let fields = fields.lock().unwrap().clone();
                    if !fields.is_empty() {
                        response = with_fields(&response, list, &fields);
                    }
                }
                let _ = stream.write_all(&closing(&response));
            });
        }
    });
    port
}
