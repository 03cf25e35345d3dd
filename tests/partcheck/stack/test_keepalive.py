"""The keep-alive moto server: connections are reused and stay in step whatever the request did."""

import http.client
import socket

import httpx
import pytest

from partcheck.aws import AwsConfig, client

pytestmark = pytest.mark.integration
# moto does not check signatures, but an unsigned request is anonymous and refused.
AUTH = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20261125/eu-west-1/s3/aws4_request, "
    "SignedHeaders=host, Signature=0"
}


def _conn(endpoint: str) -> http.client.HTTPConnection:
    host, port = endpoint.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=10)


def _sockname(conn: http.client.HTTPConnection) -> tuple[str, int]:
    assert conn.sock is not None
    return conn.sock.getsockname()


def test_one_connection_serves_many_requests_including_unread_bodies(moto):
    s3 = client("s3", AwsConfig(endpoint_url=moto))
    s3.create_bucket(Bucket="ka-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket="ka-bucket", Key="a", Body=b"hello")
    conn = _conn(moto)
    conn.request("GET", "/ka-bucket/a", headers=AUTH)
    first = conn.getresponse()
    assert first.status == 200
    assert first.getheader("Connection") != "close"
    assert first.read() == b"hello"
    local = _sockname(conn)
    # A body moto never reads (the bucket does not exist) must be drained, not parsed as the next request.
    conn.request("PUT", "/no-such-bucket/x", body=b"GET /ka-bucket/a HTTP/1.1\r\n\r\n" * 100, headers=AUTH)
    missing = conn.getresponse()
    assert missing.status == 404
    missing.read()
    conn.request("HEAD", "/ka-bucket/a", headers=AUTH)
    head = conn.getresponse()
    assert head.status == 200
    assert head.getheader("Content-Length") == "5"
    head.read()
    conn.request("GET", "/ka-bucket/a", headers=AUTH)
    again = conn.getresponse()
    assert again.read() == b"hello"
    assert _sockname(conn) == local  # still the first TCP connection


def test_metadata_keeps_underscores_and_case_as_s3_does(moto):
    s3 = client("s3", AwsConfig(endpoint_url=moto))
    s3.create_bucket(Bucket="ka-meta", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket="ka-meta", Key="k", Body=b"x", Metadata={"model_version": "1", "line": "3"})
    assert s3.head_object(Bucket="ka-meta", Key="k")["Metadata"] == {"model_version": "1", "line": "3"}


def test_chunked_requests_fall_back_to_closing_the_connection(moto):
    host, port = moto.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"PUT /ka-chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk  # the server closes: recv returns b"" instead of blocking
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 200")
    assert b"connection: close" in head


def test_expect_100_continue_gets_one_interim_response(moto):
    s3 = client("s3", AwsConfig(endpoint_url=moto))
    s3.create_bucket(Bucket="ka-expect", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    host, port = moto.removeprefix("http://").split(":")
    auth = "".join(f"{k}: {v}\r\n" for k, v in AUTH.items()).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"PUT /ka-expect/k HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n" + auth + b"\r\n"
        )
        interim = sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
    # Once is what HTTP asks; a second interim response cost both sides a write and a read per upload.
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert s3.get_object(Bucket="ka-expect", Key="k")["Body"].read() == b"hello"


def test_changes_count_the_requests_that_can_change_state_and_no_reads(moto):
    from partcheck.stack.config import free_port
    from partcheck.stack.keepalive import Changes, MotoServer

    changes = Changes()
    port = free_port()
    server = MotoServer("127.0.0.1", port, changes)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        aws = AwsConfig(endpoint_url=endpoint)
        s3, sqs = client("s3", aws), client("sqs", aws)
        s3.create_bucket(Bucket="ch-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        url = sqs.create_queue(QueueName="ch-queue")["QueueUrl"]
        assert changes.count == 2
        s3.put_object(Bucket="ch-bucket", Key="a", Body=b"x")
        sqs.send_message(QueueUrl=url, MessageBody="m")
        assert changes.count == 4
        # Reads, and a receive (it only hides a message for a while), leave a snapshot as good as before.
        s3.get_object(Bucket="ch-bucket", Key="a")["Body"].read()
        s3.head_object(Bucket="ch-bucket", Key="a")
        s3.list_objects_v2(Bucket="ch-bucket")
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        (message,) = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)["Messages"]
        assert changes.count == 4
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        s3.delete_object(Bucket="ch-bucket", Key="a")
        assert changes.count == 6
    finally:
        server.stop()


def test_a_durable_change_is_answered_only_once_saved_and_a_read_at_once():
    import threading

    from partcheck.stack.keepalive import Changes, NotSaved

    changes = Changes(durable=True)
    app = changes.wrap(lambda environ, start_response: [b"done"])
    answered: list[bytes] = []
    put = threading.Thread(target=lambda: answered.extend(app({"REQUEST_METHOD": "PUT"}, None)))
    put.start()
    assert app({"REQUEST_METHOD": "GET"}, None) == [b"done"]  # reads never wait
    put.join(timeout=0.3)
    assert put.is_alive()  # changed, not yet saved: no answer
    assert answered == []
    changes.saved(changes.count)
    put.join(timeout=5)
    assert answered == [b"done"]

    late = threading.Thread(target=lambda: answered.append(_raised(app, NotSaved)))
    late.start()
    late.join(timeout=0.3)
    assert late.is_alive()
    changes.close()  # the server stops before a snapshot held the change: an error, not an answer
    late.join(timeout=5)
    assert answered[-1] == b"NotSaved"


def _raised(app, error):
    try:
        app({"REQUEST_METHOD": "PUT"}, None)
    except error as exc:
        return type(exc).__name__.encode()
    return b"answered"


@pytest.mark.parametrize(
    ("environ", "waits"),
    [
        ({"REQUEST_METHOD": "PUT", "PATH_INFO": "/inbound/line-1/a.jpg"}, True),  # upload or copy
        ({"REQUEST_METHOD": "PUT", "PATH_INFO": "/new-bucket"}, True),
        ({"REQUEST_METHOD": "POST", "QUERY_STRING": "uploadId=abc"}, True),  # a multipart upload ends
        ({"REQUEST_METHOD": "POST", "QUERY_STRING": "delete"}, False),  # DeleteObjects
        ({"REQUEST_METHOD": "DELETE", "PATH_INFO": "/inbound/line-1/a.jpg"}, False),
        ({"REQUEST_METHOD": "POST", "HTTP_X_AMZ_TARGET": "AmazonSQS.SendMessageBatch"}, False),
        ({"REQUEST_METHOD": "POST", "HTTP_X_AMZ_TARGET": "AmazonSQS.DeleteMessage"}, False),
    ],
)
def test_only_changes_that_bring_data_in_wait_to_be_saved(environ, waits):
    import threading

    from partcheck.stack.keepalive import Changes

    changes = Changes(durable=True)
    app = changes.wrap(lambda environ, start_response: [b""])
    request = threading.Thread(target=app, args=(environ, None), daemon=True)
    request.start()
    request.join(timeout=0.3)
    assert request.is_alive() == waits
    assert changes.count == 1  # counted either way: the next snapshot saves it
    changes.saved(1)
    request.join(timeout=5)
    assert not request.is_alive()


def test_health_says_whether_changes_can_be_stored(moto):
    from partcheck.stack import HEALTH_PATH
    from partcheck.stack.config import free_port
    from partcheck.stack.keepalive import Changes, MotoServer

    plain = Changes()
    assert plain.health() == (200, {"snapshots": "off"})  # a server without a state folder

    changes = Changes(persisted=True)
    port = free_port()
    server = MotoServer("127.0.0.1", port, changes)
    server.start()
    try:
        url = f"http://127.0.0.1:{port}{HEALTH_PATH}"
        r = httpx.get(url)
        assert r.status_code == 200
        assert r.json() == {"snapshots": "ok", "changes_not_saved": 0}
        changes.snapshot_failed(OSError(28, "No space left on device"))
        r = httpx.get(url)
        assert r.status_code == 503  # docker compose then shows moto unhealthy
        assert r.json()["error"] == "OSError: [Errno 28] No space left on device"
        changes.snapshot_succeeded()
        assert httpx.get(url).status_code == 200
        assert changes.count == 0  # a health check changes nothing a snapshot keeps
    finally:
        server.stop()
