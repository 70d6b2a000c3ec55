/**
 * What the extension's plugins give one another, as jupyter-chat's do: the window's
 * Collaboration and its side panel, each under a token, and the ids of the commands.
 * Another extension may require these tokens too.
 */

import { Token } from "@lumino/coreutils";

import type { Collaboration } from "./collaboration";
import type { RoomsPanel } from "./panel";

/** The window's one connection: its rooms, their members, the chat, the file transfers. */
export const ICollaboration = new Token<Collaboration>(
  "iavicenne-lab:ICollaboration",
  "The window's iAvicenne connection: its rooms, their members, the chat and the file transfers.",
);

/** The side panel of rooms, members and chat (in the left area). */
export const IRoomsPanel = new Token<RoomsPanel>("iavicenne-lab:IRoomsPanel", "The iAvicenne side panel of rooms, members and chat.");

export const CommandIDs = {
  openPanel: "iavicenne:open-panel",
  joinRoom: "iavicenne:join-room",
  setStatus: "iavicenne:set-status",
  openDemo: "iavicenne:open-demo",
  follow: "iavicenne:follow",
  stopFollowing: "iavicenne:stop-following",
  sendFile: "iavicenne:send-file",
} as const;

/** The command palette's category of the extension's commands. */
export const PALETTE_CATEGORY = "iAvicenne";
