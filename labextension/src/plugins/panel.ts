/**
 * The side panel plugin: the rooms, their members and the chat in the left area
 * (`IRoomsPanel`), and the commands that open it and join a room.
 */

import type { JupyterFrontEnd, JupyterFrontEndPlugin } from "@jupyterlab/application";
import { ICommandPalette, InputDialog } from "@jupyterlab/apputils";
import { IRenderMimeRegistry } from "@jupyterlab/rendermime";
import { LabIcon } from "@jupyterlab/ui-components";

import type { Collaboration } from "../collaboration";
import { RoomsPanel } from "../panel";
import { CommandIDs, ICollaboration, IRoomsPanel, PALETTE_CATEGORY } from "../tokens";

const iconSvg =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
  '<circle cx="8" cy="8" r="3.2"/><circle cx="16.5" cy="9" r="2.6"/><path d="M2 19c0-3.3 2.7-5.5 6-5.5s6 2.2 6 5.5v1H2z"/>' +
  '<path d="M15 20v-1c0-1.6-.5-3-1.5-4.1.9-.5 1.9-.8 3-.8 2.9 0 5.5 1.9 5.5 4.9v1z"/></g></svg>';
/** The panel's tab icon, also the settings' icon (the schema names it `iavicenne-lab:people`). */
export const iavicenneIcon = new LabIcon({ name: "iavicenne-lab:people", svgstr: iconSvg });

export const panelPlugin: JupyterFrontEndPlugin<RoomsPanel> = {
  id: "iavicenne-lab:panel",
  description: "iAvicenne rooms, people and chat in a side panel",
  autoStart: true,
  provides: IRoomsPanel,
  requires: [ICollaboration, IRenderMimeRegistry],
  optional: [ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    collaboration: Collaboration,
    rendermime: IRenderMimeRegistry,
    palette: ICommandPalette | null,
  ): RoomsPanel => {
    const panel = new RoomsPanel(collaboration, rendermime, {
      follow: (room, user) => void app.commands.execute(CommandIDs.follow, { room, user }),
    });
    panel.title.icon = iavicenneIcon;
    app.shell.add(panel, "left", { rank: 900 });
    // exposed for the browser tests (as JupyterLab's own app is, with expose_app_in_browser)
    (window as unknown as { iavicenneLab?: unknown }).iavicenneLab = { collaboration, panel };

    app.commands.addCommand(CommandIDs.openPanel, {
      label: "iAvicenne: Open the Rooms Panel",
      execute: () => app.shell.activateById(panel.id),
    });
    app.commands.addCommand(CommandIDs.joinRoom, {
      label: "iAvicenne: Join a Room…",
      execute: async (args) => {
        let name = typeof args.room === "string" ? args.room : "";
        if (!name) {
          const answer = await InputDialog.getText({ title: "Join a room", placeholder: "room name" });
          if (!answer.button.accept || !answer.value) return;
          name = answer.value.trim();
        }
        app.shell.activateById(panel.id);
        await panel.joinAndShow(name);
      },
    });
    for (const command of [CommandIDs.openPanel, CommandIDs.joinRoom]) palette?.addItem({ command, category: PALETTE_CATEGORY });
    return panel;
  },
};
