/**
 * The file sharing plugin: "Send to a Member" on a file of the file browser, and a file
 * offered to us saved through the contents API where the receiver chose ("Save as…").
 */

import type { JupyterFrontEnd, JupyterFrontEndPlugin } from "@jupyterlab/application";
import { InputDialog, Notification } from "@jupyterlab/apputils";
import { IDefaultFileBrowser } from "@jupyterlab/filebrowser";

import type { Collaboration } from "../collaboration";
import { suggestedPath } from "../model";
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
      Notification.info(`${transfer.userId} sends you ${transfer.name} (${size})`, {
        autoClose: false,
        actions: [
          {
            label: "Save as…",
            callback: async () => {
              const suggested = suggestedPath(fileBrowser?.model.path ?? "", transfer.name);
              const answer = await InputDialog.getText({ title: `Save ${transfer.name} from ${transfer.userId} as`, text: suggested });
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
          const answer = await InputDialog.getItem({ title: `Send ${item.name} to`, items: others });
          if (!answer.button.accept || !answer.value) return;
          to = answer.value;
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
