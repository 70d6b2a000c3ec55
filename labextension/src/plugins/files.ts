/**
 * The file sharing plugin: "Send to a Member" on a file of the file browser, and a file
 * offered to us saved through the contents API where the receiver chose ("Save as…").
 */

import type { JupyterFrontEnd, JupyterFrontEndPlugin } from "@jupyterlab/application";
import { InputDialog, Notification } from "@jupyterlab/apputils";
import { IDefaultFileBrowser } from "@jupyterlab/filebrowser";

import type { Collaboration } from "../collaboration";
import { suggestedPath } from "../model";
import { personOf, personText, safeName } from "../names";
import type { RoomsPanel } from "../panel";
import { CommandIDs, ICollaboration, IRoomsPanel } from "../tokens";

export const fileSharingPlugin: JupyterFrontEndPlugin<void> = {
  id: "iavicenne-lab:file-sharing",
  description: "Send a file to a member of an iAvicenne room, and save the files offered to you",
  autoStart: true,
  requires: [ICollaboration, IRoomsPanel],
  optional: [IDefaultFileBrowser],
  activate: (app: JupyterFrontEnd, collaboration: Collaboration, panel: RoomsPanel, fileBrowser: IDefaultFileBrowser | null): void => {
    const contents = app.serviceManager.contents;
    collaboration.save = async (path, data) => {
      let binary = "";
      for (let start = 0; start < data.byteLength; start += 0x8000) {
        binary += String.fromCharCode(...data.subarray(start, start + 0x8000));
      }
      await contents.save(path, { type: "file", format: "base64", content: btoa(binary) });
    };
    collaboration.offered.connect((_, { transfer }) => {
      const size = transfer.size < 1024 ? `${transfer.size} bytes` : `${Math.round(transfer.size / 1024)} KiB`;
      // who sends it by their verified username; the name with its hidden characters written out
      const joined = collaboration.rooms.get(transfer.room);
      const from = personText(joined ? panel.personIn(joined, transfer.userId) : personOf(undefined, transfer.userId));
      const name = safeName(transfer.name);
      Notification.info(`${from} sends you ${name} (${size})`, {
        autoClose: false,
        actions: [
          {
            label: "Save as…",
            callback: async () => {
              const suggested = suggestedPath(fileBrowser?.model.path ?? "", transfer.name);
              const answer = await InputDialog.getText({ title: `Save ${name} from ${from} as`, text: suggested });
              if (!answer.button.accept || !answer.value) {
                await collaboration.declineFile(transfer.id);
                return;
              }
              app.shell.activateById(panel.id);
              await collaboration.acceptFile(transfer.id, answer.value.trim());
            },
          },
          { label: "Decline", callback: () => void collaboration.declineFile(transfer.id) },
        ],
      });
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
