import HTTPTypes
import Hummingbird
import NIOCore
import Switchboard

/// Switchboard's request and response types to Hummingbird's and back. Both sides already
/// speak swift-http-types (method, status, fields); what differs is the body (bytes here, a
/// `ByteBuffer` sequence there) and where the authority lives.
enum HTTPTypesBridge {
    /// swift-http-types marks `.host` unavailable (HTTP/2 thinking); HTTP/1.1 still sends it.
    static let hostField = HTTPField.Name("Host")!

    /// Hummingbird's request for a request Switchboard parsed. A buffered body was read whole by
    /// the shard, within `BrokerConfiguration.http.maxBodyBytes` (a larger one was refused with
    /// 413 before the handler saw it), so it becomes one buffer; a streamed one
    /// (``WorkerRequest/bodyStream``) becomes Hummingbird's streamed `RequestBody`, one
    /// `ByteBuffer` per part as the shard receives it (the same limit cuts it with 413).
    static func request(from request: WorkerRequest) -> Request {
        var fields = request.headerFields
        // HTTP/1.1's Host is HTTP/2's :authority: swift-http-types keeps it in the head, as
        // Hummingbird's own server (NIOHTTPTypes) does.
        let authority = fields[hostField]
        fields[hostField] = nil
        let head = HTTPRequest(method: request.method, scheme: nil, authority: authority,
                               path: request.target, headerFields: fields)
        let body: RequestBody
        if let stream = request.bodyStream {
            body = RequestBody(asyncSequence: StreamedBody(stream: stream))
        } else {
            body = request.body.isEmpty ? RequestBody(buffer: ByteBuffer()) : RequestBody(buffer: ByteBuffer(bytes: request.body))
        }
        return Request(head: head, body: body)
    }

    /// The collected response: status and fields as they are (the broker sets the framing
    /// fields itself), the body written whole into bytes.
    /// - Throws: ``ResponseTooLarge`` past `maxBodyBytes`, or what the body's writer throws.
    static func response(from response: Response, maxBodyBytes: Int) async throws -> WorkerResponse {
        let collector = BodyCollector(maxBodyBytes: maxBodyBytes)
        try await response.body.write(CollectingBodyWriter(collector: collector))
        return WorkerResponse(status: response.status, headerFields: response.headers, body: collector.bytes)
    }

    /// A streamed request body as Hummingbird's body sequence. Its errors are Switchboard's
    /// `RequestBodyError` (the client already got 408/413, or left).
    struct StreamedBody: AsyncSequence, Sendable {
        typealias Element = ByteBuffer
        let stream: RequestBodyStream

        struct AsyncIterator: AsyncIteratorProtocol {
            let stream: RequestBodyStream
            mutating func next() async throws -> ByteBuffer? {
                try await stream.next().map { ByteBuffer(bytes: $0) }
            }
        }

        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(stream: stream) }
    }

    /// A response body went past the adapter's `maxResponseBodyBytes`.
    struct ResponseTooLarge: Error {}

    /// Holds the bytes written so far (the writer is consumed by `finish`, the collector stays).
    /// Used by one task at a time: the body's write runs to completion before `bytes` is read.
    final class BodyCollector {
        let maxBodyBytes: Int
        var bytes: [UInt8] = []
        init(maxBodyBytes: Int) { self.maxBodyBytes = maxBodyBytes }
    }

    struct CollectingBodyWriter: ResponseBodyWriter {
        let collector: BodyCollector

        mutating func write(_ buffer: ByteBuffer) async throws {
            // Checked before copying: a runaway body is refused, never buffered.
            guard collector.bytes.count + buffer.readableBytes <= collector.maxBodyBytes else { throw ResponseTooLarge() }
            collector.bytes.append(contentsOf: buffer.readableBytesView)
        }

        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
            // HTTP/1.1 trailers need chunked framing, which the broker does not write; a
            // response's trailers are dropped (Hummingbird's routes rarely set any).
        }
    }
}
