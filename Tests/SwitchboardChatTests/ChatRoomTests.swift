import Switchboard
import Testing
@testable import switchboard_chat

@Suite("Browser chat: room history and the JSON it sends")
struct ChatRoomTests {
    func room(limit: Int, messages: Int) -> ChatRoom {
        let room = ChatRoom(name: "r", historyLimit: limit)
        for i in 1...max(messages, 1) where messages > 0 {
            #expect(room.append(name: "n", text: "m\(i)", timeMilliseconds: 0).offset == UInt64(i))
        }
        return room
    }

    @Test func missedIsExactWhileTheHistoryCoversIt() {
        let r = room(limit: 5, messages: 8)  // holds 4...8
        #expect(r.oldestOffset == 4 && r.latestOffset == 8)
        #expect(r.missed(since: 8, recent: 100).messages.isEmpty)
        #expect(r.missed(since: 8, recent: 100).covered)
        #expect(r.missed(since: 5, recent: 100).messages.map(\.text) == ["m6", "m7", "m8"])
        #expect(r.missed(since: 3, recent: 100).messages.map(\.offset) == [4, 5, 6, 7, 8], "since + 1 is the oldest held")
    }

    @Test func pastTheHistoryOrFromTheFutureMeansReload() {
        let r = room(limit: 5, messages: 8)
        let old = r.missed(since: 2, recent: 100)
        #expect(!old.covered)
        #expect(old.messages.map(\.offset) == [4, 5, 6, 7, 8], "reload: everything held")
        #expect(!r.missed(since: 9, recent: 100).covered, "an offset the room never gave (server restarted)")
    }

    @Test func firstVisitGetsTheRecentMessages() {
        let r = room(limit: 5, messages: 8)
        #expect(r.missed(since: nil, recent: 2).messages.map(\.offset) == [7, 8])
        let empty = room(limit: 5, messages: 0)
        #expect(empty.missed(since: nil, recent: 2).messages.isEmpty)
        #expect(empty.missed(since: 0, recent: 2).covered)
    }

    @Test func membersAreNamesOnceSorted() {
        let r = ChatRoom(name: "r", historyLimit: 1)
        r.addMember(SocketID(rawValue: 1), name: "bob")
        r.addMember(SocketID(rawValue: 2), name: "Ada")
        r.addMember(SocketID(rawValue: 3), name: "bob")
        #expect(r.memberNames == ["Ada", "bob"])
        #expect(r.membersVersion == 3)
        r.addMember(SocketID(rawValue: 3), name: "bob")
        #expect(r.membersVersion == 3, "a rejoin with the same name changes nothing")
        #expect(r.removeMember(SocketID(rawValue: 3)))
        #expect(!r.removeMember(SocketID(rawValue: 3)))
        #expect(r.membersVersion == 4)
        #expect(r.memberNames == ["Ada", "bob"])
    }

    @Test func jsonStringsAreEscaped() {
        #expect(ChatJSON.quoted("a\"b\\c\nd\u{01}") == #""a\"b\\c\nd\u0001""#)
        #expect(ChatJSON.quoted("<script>&") == #""\u003cscript\u003e\u0026""#)
        #expect(ChatJSON.quoted("héllo ✨ 👋") == "\"héllo ✨ 👋\"")
        let m = ChatMessage(offset: 3, name: "a", text: "</b>", timeMilliseconds: 7)
        #expect(ChatJSON.message("r", m) == #"{"type":"message","room":"r","offset":3,"name":"a","text":"\u003c/b\u003e","time":7}"#)
    }

    @Test func namesAreValidated() {
        #expect(ChatHandler.validName("  ada  ", limit: 5) == "ada")
        #expect(ChatHandler.validName("", limit: 5) == nil)
        #expect(ChatHandler.validName("   ", limit: 5) == nil)
        #expect(ChatHandler.validName("toolong", limit: 5) == nil)
        #expect(ChatHandler.validName("a\u{7}b", limit: 5) == nil)
    }
}
