/**
 * The side panel's logic that needs neither JupyterLab nor a browser: who is where, what
 * a message mentions, the @completion, dates, the unread count and marker, what "follow"
 * does. Unit-tested under node's test runner (test/model.test.mjs, on the compiled lib/).
 */
/** A JSON value, as presence states and payloads hold them. */
export type Json = null | boolean | number | string | Json[] | {
    [key: string]: Json;
};
/** A member as the room's snapshot describes it (the browser client's `Member`). */
export interface MemberLike {
    user_id: string;
    identity?: {
        username?: string;
        name?: string;
        display_name?: string;
        [field: string]: unknown;
    };
    state?: Record<string, Json>;
    connections?: number;
}
/** One connection of a member (a browser tab, a kernel), as it described itself. */
export interface ConnectionInfo {
    peer_id: string;
    kind: string;
    document?: string | null;
    notebook?: string | null;
}
/** A member as the panel shows it: one row per identity. */
export interface PersonRow {
    userId: string;
    /** The name to show: the presence state's chosen name, else the verified display name. */
    label: string;
    /** The verified username (what cannot be chosen). */
    username: string;
    status: string;
    /** "eda.ipynb · cell 4", or "" when the member reports no document. */
    where: string;
    connections: number;
    you: boolean;
}
/** What a JupyterLab window reports as its presence: which document and cell, and who. */
export interface LabPresence {
    kind: "lab";
    status: string;
    display_name: string;
    /** The document open in the main area (its path on the server), or null. */
    document: string | null;
    /** The active cell's index (0-based) in a notebook, or null. */
    cell: number | null;
    /** The active cell's id (nbformat 4.5), so a follower finds it when cells moved. */
    cell_id: string | null;
    /** The base URL of the server the document is on: a follower opens it only on the same one. */
    server: string;
}
/** Where a member is, in words: the document, and the cell (shown 1-based, as JupyterLab counts). */
export declare function whereOf(state: Record<string, Json> | undefined): string;
/** The rows of the members list: ourselves first, then by label, one row per member. */
export declare function peopleOf(members: Iterable<MemberLike>, me: string | null): PersonRow[];
/** How many people are online over all rooms: distinct members, ourselves not counted. */
export declare function peopleOnline(rooms: Iterable<Iterable<MemberLike>>, me: string | null): number;
/** The user ids a message mentions (`@bob`, `@bob,`), among `names`. */
export declare function mentionsIn(message: string, names: Iterable<string>): Set<string>;
/** Whether `message` mentions `me` (or everyone, `@all`/`@here`). */
export declare function mentions(message: string, me: string | null): boolean;
/** The `@word` being typed at `caret`: where it starts (the `@`) and what is typed after it. */
export declare function mentionQuery(value: string, caret: number): {
    start: number;
    query: string;
} | null;
/** The names that complete `query`: those starting with it first, then those containing it. */
export declare function completions(query: string, names: Iterable<string>, limit?: number): string[];
/** The input's value and caret after choosing `name` for the `@word` at `caret`. */
export declare function completeMention(value: string, caret: number, name: string): {
    value: string;
    caret: number;
};
/** The heading of a day's messages: "Today", "Yesterday", or the date (local time). */
export declare function dayLabel(timestamp: string, now?: Date): string;
/** Whether a day heading goes before a message: the first, or one on another local day than the last. */
export declare function startsDay(previous: string | null, timestamp: string): boolean;
/** The time of a message, hours and minutes (local). */
export declare function timeLabel(timestamp: string): string;
/**
 * Messages not seen yet: counted while the reader cannot see the end of the chat (the
 * panel hidden, or scrolled up), with the marker before the first of them.
 */
export declare class UnreadTracker {
    /** How many messages came that the reader has not seen. */
    count: number;
    /** The position (in messages shown) of the first unseen one, or null. */
    marker: number | null;
    /** How many of the unseen mention the reader (or are direct to them). */
    mentions: number;
    /** A message shown at `index`; `seen`: the reader sees the end of the chat now. Answers whether it is unread. */
    arrived(index: number, seen: boolean, mentionsMe?: boolean): boolean;
    /** The reader saw the end: nothing is unread (the marker stays where it was, to show what was new). */
    read(): void;
    /** Forget the marker too (the reader wrote, or switched rooms). */
    clear(): void;
}
export type FollowTarget = {
    open: true;
    path: string;
    cell: number | null;
    cellId: string | null;
} | {
    open: false;
    path: string;
    reason: string;
};
/** What following a member does: open their document here, or only say where it is. */
export declare function followTarget(state: Record<string, Json> | undefined, ourServer: string): FollowTarget | null;
/** The presence a JupyterLab window reports for what it shows now. */
export declare function labPresence(options: {
    status: string;
    displayName: string;
    document: string | null;
    cell: number | null;
    cellId: string | null;
    server: string;
}): LabPresence;
/** Whether two presence states differ in what the others see (so a change is worth sending). */
export declare function samePresence(a: Record<string, unknown> | null, b: Record<string, unknown>): boolean;
/** The text of a room message: the seed's `content` field, as the other clients put it. */
export declare function messageText(content: Record<string, Json> | undefined): string;
/** A connection's line in a member's list: "kernel bob#3f2a1c · eda.ipynb". */
export declare function connectionLabel(connection: ConnectionInfo): string;
/**
 * The name an offered file is suggested under: its last path segment, without control
 * characters, never "." or ".."; whatever a sender writes cannot point elsewhere.
 */
export declare function safeFileName(name: unknown): string;
/** The path a received file is suggested at: in the folder the file browser shows. */
export declare function suggestedPath(folder: string, name: string): string;
/** An offer as a control message carries it, checked; null when it is not one. */
export declare function parseOffer(content: Record<string, Json>): {
    id: string;
    name: string;
    size: number;
    peerId: string | null;
} | null;
/** Whether a file's bytes may be taken: one we accepted, coming from the person who offered it. */
export declare function mayReceive(transfer: {
    direction: string;
    state: string;
    userId: string;
} | undefined, fromUser: string | undefined): boolean;
