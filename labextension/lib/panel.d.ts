/**
 * The side panel: the rooms one may join (with member counts), and for the room chosen its
 * members (status, where they are, their connections) and its chat.
 *
 * Every string from another person goes in as text (`textContent`); a chat message's
 * Markdown only through JupyterLab's Markdown renderer with an untrusted model, which
 * passes it through JupyterLab's sanitizer.
 */
import type { IRenderMimeRegistry } from "@jupyterlab/rendermime";
import { Widget } from "@lumino/widgets";
import type { Collaboration } from "./collaboration";
export interface PanelActions {
    follow(room: string, userId: string): void;
}
export declare class RoomsPanel extends Widget {
    private readonly collaboration;
    private readonly rendermime;
    private readonly actions;
    /** The room whose members and chat are shown. */
    current: string | null;
    private readonly stateLine;
    private readonly roomsList;
    private readonly joinInput;
    private readonly membersList;
    private readonly chat;
    private readonly log;
    private readonly jumpButton;
    private readonly toSelect;
    private readonly input;
    private readonly completion;
    private readonly roomTitle;
    private readonly transfersSection;
    private readonly transfersList;
    private completionItems;
    private completionIndex;
    private rendered;
    constructor(collaboration: Collaboration, rendermime: IRenderMimeRegistry, actions: PanelActions);
    /** Unread messages over all rooms (the tab's badge). */
    get unread(): number;
    private build;
    joinAndShow(name: string): Promise<void>;
    /** Show room `name`'s members and chat. */
    showRoom(name: string): void;
    protected onUpdateRequest(): void;
    protected onAfterShow(): void;
    render(): void;
    private renderRooms;
    private renderMembers;
    private renderTransfers;
    private atEnd;
    private seen;
    private onArrived;
    private renderEntry;
    /** The message's Markdown, through JupyterLab's renderer (untrusted: its sanitizer applies). */
    private renderMarkdown;
    private scrollToEnd;
    private onScroll;
    private markRead;
    private updateBadge;
    private sendInput;
    private memberNames;
    private updateCompletion;
    private hideCompletion;
    private choose;
    private onKeyDown;
}
