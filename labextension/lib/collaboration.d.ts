/**
 * One window's collaboration: the room connection, the rooms joined, their members,
 * chat and unread counts, and the presence this window reports. The side panel, the
 * status bar item and the commands all read and drive this one object, so it outlives
 * notebooks and kernels (it is the window's, not a cell's).
 *
 * The browser client is the one the server serves (`{baseUrl}iavicenne/static/iavicenne.js`),
 * loaded at run time, not bundled: the extension always speaks the protocol of the server
 * it runs against, and its types are the client's own (iavicenne.d.ts, `import type`).
 */
import type * as Client from "iavicenne-client";
import { Signal } from "@lumino/signaling";
import { type ConnectionInfo, type LabPresence, UnreadTracker } from "./model";
export type ClientModule = typeof Client;
/** Load the browser client from the server (a module of its own, outside webpack's bundle). */
export declare function loadClient(baseUrl: string): Promise<ClientModule>;
/** A line of a room's chat. */
export interface ChatEntry {
    userId: string;
    /** The sender's name to show (their chosen display name, else the verified one). */
    label: string;
    text: string;
    timestamp: string;
    direct: boolean;
    /** For a direct message: to whom (ours), or null. */
    to: string | null;
    mine: boolean;
    mentionsMe: boolean;
}
/** A room joined in this window. */
export declare class JoinedRoom {
    readonly room: Client.Room;
    readonly entries: ChatEntry[];
    readonly unread: UnreadTracker;
    /** user id -> the connections that described themselves when asked. */
    readonly connections: Map<string, ConnectionInfo[]>;
    /** A gap in the history shown: some older messages could not be recovered. */
    gap: boolean;
    constructor(room: Client.Room);
    get name(): string;
}
/** A file on its way between two windows (or a window and a kernel), as both sides show it. */
export interface Transfer {
    id: string;
    direction: "send" | "receive";
    /** The other person. */
    userId: string;
    name: string;
    size: number;
    done: number;
    state: "offered" | "accepted" | "sending" | "receiving" | "done" | "declined" | "failed";
    /** Where it is saved (the receiver's choice). */
    path: string | null;
    error: string | null;
    room: string;
    /** the bytes, on the sender's side until sent */
    data?: Uint8Array;
    /** the other side's peer id (the receiver's, once it accepted) */
    peerId?: string;
}
/** An offer of a file, handed to the window to accept (and choose where it goes) or decline. */
export interface Offer {
    transfer: Transfer;
}
export interface Settings {
    displayName: string;
    rooms: string[];
    notifications: boolean;
    status: string;
}
export interface Notice {
    room: string;
    entry: ChatEntry;
}
export declare class Collaboration {
    readonly baseUrl: string;
    settings: Settings;
    readonly changed: Signal<this, void>;
    /** A message that mentions us, or a direct message to us (for notifications). */
    readonly noticed: Signal<this, Notice>;
    /** A new chat line in a room (the panel decides whether it is seen). */
    readonly arrived: Signal<this, {
        room: JoinedRoom;
        entry: ChatEntry;
        index: number;
    }>;
    readonly rooms: Map<string, JoinedRoom>;
    listing: Client.RoomListing[];
    client: Client.RoomClient | null;
    module: ClientModule | null;
    /** Why the connection could not be made, or "". */
    problem: string;
    readonly transfers: Map<string, Transfer>;
    /** A file offered to us: the window asks where to save it. */
    readonly offered: Signal<this, Offer>;
    /** Saves what arrived (the window's contents service). */
    save: (path: string, data: Uint8Array) => Promise<void>;
    /** room -> this window's peer network there (one peer per window: "<user>#<tag>") */
    private readonly networks;
    private readonly tag;
    private readonly wired;
    private presence;
    private sentPresence;
    constructor(baseUrl: string, settings: Settings, initial: LabPresence);
    /** The loaded client: the protocol's names (CONTROL_KEY, ControlKind, ConnectionKind) and
     * `userOfPeer` are its own, so the extension spells none of them. */
    private get protocol();
    get state(): Client.ConnectionState | "loading" | "failed";
    get me(): string | null;
    /** People online in the rooms joined (ourselves not counted). */
    get online(): number;
    /** Connect (once) and join the rooms of the settings. */
    start(): Promise<void>;
    refreshRooms(): Promise<void>;
    /** Join `name` with our presence and its recent history; the rooms listing follows. */
    join(name: string): Promise<JoinedRoom>;
    leave(name: string): Promise<void>;
    /** Send `text` to the room, or to one member of it (a direct message). */
    send(name: string, text: string, to?: string | null): Promise<void>;
    /** What this window shows changed: report it to every room (only when it differs). */
    setPresence(presence: LabPresence): void;
    get currentPresence(): LabPresence;
    /** Ask a member's connections to describe themselves; their answers fill `connections`. */
    describe(name: string, userId: string): Promise<void>;
    labelOf(joined: JoinedRoom, userId: string): string;
    private presenceState;
    private onMessage;
    private addEntry;
    private onControl;
    get peerId(): string;
    private startPeers;
    /** Offer `data` (the file `name`) to `userId` in room `name`; it goes once they accept. */
    offerFile(room: string, userId: string, name: string, data: Uint8Array): Promise<Transfer>;
    /** Accept an offer: the sender sends, and what arrives is saved at `path`. */
    acceptFile(id: string, path: string): Promise<void>;
    declineFile(id: string): Promise<void>;
    private onFileControl;
    private sendFile;
    /** A link's messages: a file's header, then its bytes (with progress on the way). */
    private wire;
}
