/**
 * The file sharing plugin: "Send to a Member" on a file of the file browser, and a file
 * offered to us saved through the contents API where the receiver chose ("Save as…").
 *
 * Nothing is lost on the receiver's side: the path typed is checked (received.ts
 * `checkSavePath`: no `..`, no absolute path, no hidden characters), the folders it needs
 * are made *before* we accept (so a folder that cannot be made is said before any byte
 * flows), and an existing name asks "Replace / Keep both / Cancel". When the bytes come,
 * a file that appeared meanwhile is kept too (a numbered name), unless "Replace" was
 * chosen for it. The sender is told what became of the file (`file-outcome`) and shows it.
 */

import type { JupyterFrontEnd, JupyterFrontEndPlugin } from "@jupyterlab/application";
import { Dialog, InputDialog, Notification, showDialog } from "@jupyterlab/apputils";
import { IDefaultFileBrowser } from "@jupyterlab/filebrowser";

import type { Collaboration, Transfer } from "../collaboration";
import { suggestedPath } from "../model";
import { personOf, personText, safeName } from "../names";
import type { RoomsPanel } from "../panel";
import { checkSavePath, numberedPath } from "../received";
import { CommandIDs, ICollaboration, IRoomsPanel } from "../tokens";

/** The window's contents service (the Jupyter contents API of this server). */
type ContentsManager = JupyterFrontEnd["serviceManager"]["contents"];

/** How many numbered names ("x (1).csv"…) are tried to keep both files. */
const MAX_NUMBERED = 1000;

/** What is at `path` on this server: "file", "directory", or null (nothing). */
export async function kindAt(contents: ContentsManager, path: string): Promise<"file" | "directory" | null> {
  try {
    const model = await contents.get(path, { content: false });
    return model.type === "directory" ? "directory" : "file";
  } catch (error) {
    const status = (error as { response?: { status?: number } })?.response?.status;
    if (status === 404) return null;
    throw error;
  }
}

/** Make the folders `folders` (outermost first) that do not exist; an error says which cannot be. */
export async function ensureFolders(contents: ContentsManager, folders: string[]): Promise<void> {
  for (const folder of folders) {
    const kind = await kindAt(contents, folder);
    if (kind === "directory") continue;
    if (kind === "file") throw new Error(`cannot create the folder ${folder}: a file has that name`);
    try {
      await contents.save(folder, { type: "directory" });
    } catch (error) {
      throw new Error(`cannot create the folder ${folder}: ${String((error as Error)?.message ?? error)}`);
    }
  }
}

/** `path`, or the first numbered name beside it that is free ("x (1).csv"): both files kept. */
export async function freePath(contents: ContentsManager, path: string): Promise<string> {
  for (let n = 0; n <= MAX_NUMBERED; n += 1) {
    const candidate = numberedPath(path, n);
    if ((await kindAt(contents, candidate)) === null) return candidate;
  }
  throw new Error(`${path} and ${MAX_NUMBERED} numbered names beside it are taken`);
}

/** Base64 of bytes, in slices (a spread of a large array overflows the stack). */
function base64Of(data: Uint8Array): string {
  let binary = "";
  for (let start = 0; start < data.byteLength; start += 0x8000) {
    binary += String.fromCharCode(...data.subarray(start, start + 0x8000));
  }
  return btoa(binary);
}

/** Save received bytes at the path accepted: checked again, folders made, never over a file not chosen to be replaced. */
export async function saveReceived(contents: ContentsManager, path: string, data: Uint8Array, transfer: Transfer): Promise<string> {
  const check = checkSavePath(path);
  if (!check.ok) throw new Error(check.reason);
  await ensureFolders(contents, check.folders);
  const target = transfer.onExisting === "replace" ? check.path : await freePath(contents, check.path);
  await contents.save(target, { type: "file", format: "base64", content: base64Of(data) });
  return target;
}

type Choice = { path: string; onExisting: "replace" | "keep-both" } | null;

/** Ask where to save an offered file until the answer is a path we can save at (or the receiver gives up: null). */
export async function chooseWhere(contents: ContentsManager, title: string, suggested: string): Promise<Choice> {
  let text = suggested;
  for (;;) {
    const answer = await InputDialog.getText({ title, text });
    if (!answer.button.accept || !answer.value) return null;
    text = answer.value;
    const check = checkSavePath(answer.value);
    let problem = check.ok ? "" : check.reason;
    if (check.ok) {
      try {
        await ensureFolders(contents, check.folders); // before we accept: no byte flows to a path that cannot be
        const kind = await kindAt(contents, check.path);
        if (kind === null) return { path: check.path, onExisting: "keep-both" };
        if (kind === "directory") {
          problem = `${check.path} is a folder`;
        } else {
          const free = await freePath(contents, check.path);
          const choice = await showDialog({
            title: `${safeName(check.path)} exists`,
            body: `Replace it (its content is lost), keep both (the new file is saved as ${safeName(free)}), or choose another name.`,
            buttons: [Dialog.cancelButton({ label: "Cancel" }), Dialog.okButton({ label: "Keep both" }), Dialog.warnButton({ label: "Replace" })],
          });
          if (choice.button.label === "Replace") return { path: check.path, onExisting: "replace" };
          if (choice.button.label === "Keep both") return { path: free, onExisting: "keep-both" };
          continue; // Cancel: choose another name
        }
      } catch (error) {
        problem = String((error as Error)?.message ?? error);
      }
    }
    await showDialog({ title: "Cannot save there", body: safeName(problem), buttons: [Dialog.okButton()] });
  }
}

export const fileSharingPlugin: JupyterFrontEndPlugin<void> = {
  id: "iavicenne-lab:file-sharing",
  description: "Send a file to a member of an iAvicenne room, and save the files offered to you",
  autoStart: true,
  requires: [ICollaboration, IRoomsPanel],
  optional: [IDefaultFileBrowser],
  activate: (app: JupyterFrontEnd, collaboration: Collaboration, panel: RoomsPanel, fileBrowser: IDefaultFileBrowser | null): void => {
    const contents = app.serviceManager.contents;
    collaboration.save = (path, data, transfer) => saveReceived(contents, path, data, transfer);
    const personFor = (transfer: Transfer) => {
      const joined = collaboration.rooms.get(transfer.room);
      return personText(joined ? panel.personIn(joined, transfer.userId) : personOf(undefined, transfer.userId));
    };
    collaboration.offered.connect((_, { transfer }) => {
      const size = transfer.size < 1024 ? `${transfer.size} bytes` : `${Math.round(transfer.size / 1024)} KiB`;
      // who sends it by their verified username; the name with its hidden characters written out
      const from = personFor(transfer);
      const name = safeName(transfer.name);
      Notification.info(`${from} sends you ${name} (${size})`, {
        autoClose: false,
        actions: [
          {
            label: "Save as…",
            callback: async () => {
              const suggested = suggestedPath(fileBrowser?.model.path ?? "", transfer.name);
              const choice = await chooseWhere(contents, `Save ${name} from ${from} as`, suggested);
              if (!choice) {
                await collaboration.declineFile(transfer.id);
                return;
              }
              app.shell.activateById(panel.id);
              await collaboration.acceptFile(transfer.id, choice.path, choice.onExisting);
            },
          },
          { label: "Decline", callback: () => void collaboration.declineFile(transfer.id) },
        ],
      });
    });

    // the sender hears what became of each file it sent: saved where, or why not
    const told = new Set<string>();
    collaboration.changed.connect(() => {
      for (const transfer of collaboration.transfers.values()) {
        if (transfer.direction !== "send" || told.has(transfer.id)) continue;
        if (transfer.state !== "done" && transfer.state !== "failed" && transfer.state !== "declined") continue;
        told.add(transfer.id);
        const to = personFor(transfer);
        const name = safeName(transfer.name);
        if (transfer.state === "done") Notification.success(`${to} saved ${name} as ${safeName(transfer.path ?? "")}`, { autoClose: 8000 });
        else if (transfer.state === "declined") Notification.info(`${to} declined ${name}${transfer.error ? `: ${safeName(transfer.error)}` : ""}`, { autoClose: 8000 });
        else Notification.error(`${name} to ${to}: ${safeName(transfer.error ?? "failed")}`, { autoClose: false });
      }
    });

    app.commands.addCommand(CommandIDs.sendFile, {
      label: "Send to a Member (iAvicenne)…",
      isEnabled: () => Boolean(panel.current) && Boolean(fileBrowser),
      execute: async (args) => {
        const room = panel.current;
        const item = typeof args.path === "string" ? { path: args.path, name: args.path.split("/").pop() ?? args.path } : fileBrowser?.selectedItems().next().value;
        if (!room || !item) return;
        const joined = collaboration.rooms.get(room);
        const others = [...(joined?.room.members.keys() ?? [])].filter((user) => user !== collaboration.me);
        let to = typeof args.to === "string" ? args.to : "";
        if (!to) {
          // each by their verified username: "@bob (Bob)"
          const labels = new Map(others.map((user) => [joined ? personText(panel.personIn(joined, user)) : user, user]));
          const answer = await InputDialog.getItem({ title: `Send ${safeName(item.name)} to`, items: [...labels.keys()] });
          if (!answer.button.accept || !answer.value) return;
          to = labels.get(answer.value) ?? "";
          if (!to) return;
        }
        const file = await contents.get(item.path, { type: "file", format: "base64", content: true });
        const bytes = Uint8Array.from(atob(String(file.content).replace(/\s/g, "")), (c) => c.charCodeAt(0));
        app.shell.activateById(panel.id);
        await collaboration.offerFile(room, to, item.name, bytes);
      },
    });
    app.contextMenu.addItem({ command: CommandIDs.sendFile, selector: '.jp-DirListing-item[data-isdir="false"]', rank: 20 });
  },
};
