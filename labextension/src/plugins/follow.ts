/**
 * The follow plugin: the command that opens what a member is looking at (their document,
 * at their cell) when it is a document of this server; otherwise it says where they are.
 */

import type { JupyterFrontEnd, JupyterFrontEndPlugin } from "@jupyterlab/application";
import { Dialog, showDialog } from "@jupyterlab/apputils";
import { IDocumentManager } from "@jupyterlab/docmanager";
import { NotebookPanel } from "@jupyterlab/notebook";

import type { Collaboration } from "../collaboration";
import { followTarget } from "../model";
import { type NamedMember, personOf, personText, safeName } from "../names";
import { CommandIDs, ICollaboration } from "../tokens";

export const followPlugin: JupyterFrontEndPlugin<void> = {
  id: "iavicenne-lab:follow",
  description: "Open the document a member of an iAvicenne room is looking at",
  autoStart: true,
  requires: [ICollaboration],
  optional: [IDocumentManager],
  activate: (app: JupyterFrontEnd, collaboration: Collaboration, docManager: IDocumentManager | null): void => {
    const ourServer = new URL(collaboration.baseUrl, window.location.href).href;
    app.commands.addCommand(CommandIDs.follow, {
      label: (args) => (typeof args.user === "string" ? `iAvicenne: Open What ${safeName(args.user)} Is Looking At` : "iAvicenne: Follow"),
      execute: async (args) => {
        const room = collaboration.rooms.get(String(args.room ?? ""));
        const member = room?.room.members.get(String(args.user ?? ""));
        const target = followTarget(member?.state, ourServer);
        // named by their verified username: a display name cannot pass for another
        const who = personText(personOf(member as NamedMember | undefined, String(args.user ?? "")));
        if (!member || !target) {
          await showDialog({ title: "Follow", body: `${who} has no document open`, buttons: [Dialog.okButton()] });
          return;
        }
        if (!target.open || !docManager) {
          const reason = target.open ? "this window cannot open documents" : target.reason;
          await showDialog({
            title: `${who} is looking at`,
            body: safeName(`${target.path} (not opened: ${reason})`),
            buttons: [Dialog.okButton()],
          });
          return;
        }
        const widget = docManager.openOrReveal(target.path);
        if (widget instanceof NotebookPanel) {
          await widget.context.ready;
          await widget.revealed;
          const notebook = widget.content;
          let index = target.cell ?? -1;
          if (target.cellId) {
            const found = notebook.widgets.findIndex((cell) => cell.model.id === target.cellId);
            if (found >= 0) index = found;
          }
          if (index >= 0 && index < notebook.widgets.length) {
            notebook.activeCellIndex = index;
            await notebook.scrollToItem(index).catch(() => {});
          }
        }
      },
    });
  },
};
