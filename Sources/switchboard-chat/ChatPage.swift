import Switchboard

/// The browser page: `Web/index.html`, `chat.css` and `chat.js`, compiled into the executable
/// by SwiftPM (`.embedInCode`): one binary to deploy, nothing to build, nothing fetched from
/// elsewhere. Edit the files, rebuild, reload.
enum ChatPage {
    struct File {
        let bytes: [UInt8]
        let headerFields: HTTPFields
    }

    /// The page may load only its own files and open its own WebSocket: even a message that
    /// somehow reached the DOM as markup could not run a script (the page uses `textContent`).
    static let securityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    private static func file(_ bytes: [UInt8], _ contentType: String) -> File {
        File(bytes: bytes, headerFields: [
            .contentType: contentType,
            .cacheControl: "no-cache",
            .contentSecurityPolicy: securityPolicy,
            HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        ])
    }

    static let files: [String: File] = [
        "/": file(PackageResources.index_html, "text/html; charset=utf-8"),
        "/index.html": file(PackageResources.index_html, "text/html; charset=utf-8"),
        "/chat.css": file(PackageResources.chat_css, "text/css; charset=utf-8"),
        "/chat.js": file(PackageResources.chat_js, "text/javascript; charset=utf-8"),
    ]

    static func file(at path: String) -> File? { files[path] }
}
