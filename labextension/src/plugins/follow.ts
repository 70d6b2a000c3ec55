/**
 * The follow plugin. On one server, Follow keeps opening what a member looks at (their
 * document, at their cell) as they move, until "Stop following" (the bar at the top, or the
 * command). Across servers it cannot open their document here: it offers "Ask for a copy"
 * (copies.ts), which they accept or decline in their window.
 *
 * What a member's presence says is theirs to write: a path is opened only when it is a
 * plain path inside this server's folder (received.ts `checkSavePath`: no `..`, no absolute
 * path, no hidden characters) that exists, one opening at a time and at most two a second, only again when it
 * changed, and only while we follow them.
 */

import type { JupyterFrontEnd, JupyterFrontEndPlugin } from "@jupyterlab/application";
import { Dialog, ICommandPalette, showDialog } from "@jupyterlab/apputils";
import { IDocumentManager } from "@jupyterlab/docmanager";

import type { Collaboration } from "../collaboration";
import { CopyRequests, openAt } from "../copies";
import { followTarget, suggestedPath } from "../model";
import { type NamedMember, personOf, personText, safeName } from "../names";
import { checkSavePath } from "../received";
import { CommandIDs, ICollaboration, PALETTE_CATEGORY } from "../tokens";
import { chooseWhere, kindAt } from "./files";

/** The shortest time between two documents opened while following (a presence that flips
 * as fast as it can does not open tabs as fast). */
const FOLLOW_INTERVAL_MS = 500;

/** Whom we follow, and what of theirs we last opened. */
interface Following {
  room: string;
  user: string;
  /** What of theirs we last acted on (path, cell), null before the first. */
  opened: string | null;
}

export const followPlugin: JupyterFrontEndPlugin<void> = {
  id: "iavicenne-lab:follow",
  description: "Follow a member of an iAvicenne room: open what they look at, or ask them for a copy",
  autoStart: true,
  requires: [ICollaboration],
  optional: [IDocumentManager, ICommandPalette],
  activate: (app: JupyterFrontEnd, collaboration: Collaboration, docManager: IDocumentManager | null, palette: ICommandPalette | null): void => {
    const ourServer = new URL(collaboration.baseUrl, window.location.href).href;
    const contents = app.serviceManager.contents;
    const copies = new CopyRequests(app, collaboration, docManager);
    let following: Following | null = null;
    let busy = false;

    // the bar that says whom we follow, with its Stop button
    const bar = document.createElement("div");
    bar.className = "iav-lab-following";
    bar.hidden = true;
    const barText = document.createElement("span");
    const stop = document.createElement("button");
    stop.className = "jp-mod-styled iav-lab-follow-stop";
    stop.textContent = "Stop following";
    stop.addEventListener("click", () => void app.commands.execute(CommandIDs.stopFollowing));
    bar.append(barText, stop);
    document.body.append(bar);

    const memberOf = (room: string, user: string) => collaboration.rooms.get(room)?.room.members.get(user);
    const who = (room: string, user: string) => personText(personOf(memberOf(room, user) as NamedMember | undefined, user));

    /** Open what the person we follow looks at now, if it changed and may be opened. */
    const keepUp = async (): Promise<void> => {
      if (!following || busy || !docManager) return;
      const { room, user } = following;
      const member = memberOf(room, user);
      if (!member) {
        following = null; // they left: nothing more to follow
        bar.hidden = true;
        return;
      }
      const target = followTarget(member.state, ourServer);
      // what we did about what they look at now is said until they look at something else
      const key = target ? JSON.stringify([target.path, target.open, target.open ? target.cell : null, target.open ? target.cellId : null]) : "";
      if (key === following.opened) return;
      following.opened = key;
      const head = `Following ${who(room, user)}`;
      if (!target || !target.open) {
        barText.textContent = target ? `${head} · ${safeName(target.path)} (not on this server)` : `${head} · no document open`;
        return;
      }
      const check = checkSavePath(target.path);
      if (!check.ok) {
        barText.textContent = `${head} · not opened: ${safeName(check.reason)}`;
        return;
      }
      barText.textContent = `${head} · ${safeName(target.path)}`;
      busy = true;
      try {
        if ((await kindAt(contents, check.path)) !== "file") throw new Error(`${check.path} is not a file here`);
        await openAt(docManager, check.path, target.cell, target.cellId);
      } catch (error) {
        barText.textContent = `${head} · not opened: ${safeName(String((error as Error)?.message ?? error))}`;
      } finally {
        // at most one opening per FOLLOW_INTERVAL_MS, however fast their presence changes;
        // then what they look at by then (nothing happens when it did not change)
        setTimeout(() => {
          busy = false;
          void keepUp();
        }, FOLLOW_INTERVAL_MS);
      }
    };
    collaboration.changed.connect(() => void keepUp());

    /** Across servers: ask them for a copy, saved here where we choose. */
    const askForCopy = async (room: string, user: string, theirPath: string, saveAs?: string): Promise<void> => {
      const name = theirPath.split("/").pop() ?? theirPath;
      let choice: { path: string; onExisting: "replace" | "keep-both" } | null;
      if (saveAs !== undefined) {
        const check = checkSavePath(saveAs);
        choice = check.ok ? { path: check.path, onExisting: "keep-both" } : null;
      } else {
        choice = await chooseWhere(contents, `Save the copy of ${safeName(name)} from ${who(room, user)} as`, suggestedPath("", name));
      }
      if (!choice) return;
      await copies.ask(room, user, theirPath, choice.path, choice.onExisting);
    };

    app.commands.addCommand(CommandIDs.follow, {
      label: (args) => (typeof args.user === "string" ? `iAvicenne: Follow ${safeName(args.user)}` : "iAvicenne: Follow"),
      execute: async (args) => {
        const room = String(args.room ?? "");
        const user = String(args.user ?? "");
        const member = memberOf(room, user);
        const target = followTarget(member?.state, ourServer);
        // named by their verified username: a display name cannot pass for another
        const person = who(room, user);
        if (!member || !target || user === collaboration.me) {
          await showDialog({ title: "Follow", body: `${person} has no document open`, buttons: [Dialog.okButton()] });
          return;
        }
        // a copy is asked of a JupyterLab window on another server (a kernel, or a
        // connection that does not say where it is, cannot answer): else only where they are
        const canAsk = !target.open && member.state?.kind === "lab" && typeof member.state?.server === "string" && member.state.server !== "";
        if (!target.open && !canAsk) {
          await showDialog({ title: `${person} is looking at`, body: safeName(`${target.path} (not opened: ${target.reason})`), buttons: [Dialog.okButton()] });
          return;
        }
        if (!target.open) {
          if (typeof args.saveAs === "string") return askForCopy(room, user, target.path, args.saveAs);
          const answer = await showDialog({
            title: `${person} is looking at`,
            body: safeName(`${target.path} (${target.reason}): ask them for a copy? They are asked first.`),
            buttons: [Dialog.cancelButton({ label: "Close" }), Dialog.okButton({ label: "Ask for a copy" })],
          });
          if (answer.button.accept) await askForCopy(room, user, target.path);
          return;
        }
        if (!docManager) {
          await showDialog({ title: `${person} is looking at`, body: safeName(`${target.path} (this window cannot open documents)`), buttons: [Dialog.okButton()] });
          return;
        }
        following = { room, user, opened: null };
        bar.hidden = false;
        await keepUp();
      },
    });
    app.commands.addCommand(CommandIDs.stopFollowing, {
      label: "iAvicenne: Stop Following",
      isEnabled: () => following !== null,
      execute: () => {
        following = null;
        bar.hidden = true;
      },
    });
    palette?.addItem({ command: CommandIDs.stopFollowing, category: PALETTE_CATEGORY });
    // for the browser tests, beside the panel's (plugins/panel.ts)
    (window as unknown as { iavicenneFollow?: unknown }).iavicenneFollow = {
      copies,
      get following() {
        return following ? { room: following.room, user: following.user } : null;
      },
    };
  },
};
