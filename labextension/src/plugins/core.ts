/**
 * The core plugin: the window's one Collaboration, made from the settings and told what
 * this window shows; every other plugin requires it (`ICollaboration`). It owns the
 * settings (its id, `iavicenne-lab:plugin`, is the settings schema's), so the commands that
 * change them (the status) are here, with the one that needs nothing else (the demo page).
 */

import type { JupyterFrontEnd, JupyterFrontEndPlugin } from "@jupyterlab/application";
import { ICommandPalette, InputDialog } from "@jupyterlab/apputils";
import { PageConfig } from "@jupyterlab/coreutils";
import { IDocumentManager } from "@jupyterlab/docmanager";
import { INotebookTracker } from "@jupyterlab/notebook";
import { ISettingRegistry } from "@jupyterlab/settingregistry";

import { Collaboration, type Settings } from "../collaboration";
import { labPresence } from "../model";
import { CommandIDs, ICollaboration, PALETTE_CATEGORY } from "../tokens";

const PLUGIN_ID = "iavicenne-lab:plugin";

function readSettings(settings: ISettingRegistry.ISettings | null): Settings {
  const composite = (settings?.composite ?? {}) as Record<string, unknown>;
  const rooms = Array.isArray(composite.rooms) ? composite.rooms.filter((room): room is string => typeof room === "string") : [];
  return {
    displayName: typeof composite.displayName === "string" ? composite.displayName : "",
    rooms,
    notifications: composite.notifications !== false,
    status: typeof composite.status === "string" ? composite.status : "",
    muted: Array.isArray(composite.muted) ? composite.muted.filter((name): name is string => typeof name === "string") : [],
  };
}

export const corePlugin: JupyterFrontEndPlugin<Collaboration> = {
  id: PLUGIN_ID,
  description: "iAvicenne's connection and rooms for this window, with its settings",
  autoStart: true,
  provides: ICollaboration,
  optional: [IDocumentManager, INotebookTracker, ISettingRegistry, ICommandPalette],
  activate: async (
    app: JupyterFrontEnd,
    docManager: IDocumentManager | null,
    notebooks: INotebookTracker | null,
    settingRegistry: ISettingRegistry | null,
    palette: ICommandPalette | null,
  ): Promise<Collaboration> => {
    const baseUrl = PageConfig.getBaseUrl();
    const ourServer = new URL(baseUrl, window.location.href).href;
    const settings = settingRegistry ? await settingRegistry.load(PLUGIN_ID).catch(() => null) : null;
    let current = readSettings(settings);

    /** What this window shows now: the current document, and a notebook's active cell. */
    const presenceNow = () => {
      const widget = app.shell.currentWidget;
      const context = widget && docManager ? docManager.contextForWidget(widget) : undefined;
      let cell: number | null = null;
      let cellId: string | null = null;
      if (widget && notebooks && widget === notebooks.currentWidget) {
        const notebook = notebooks.currentWidget.content;
        cell = notebook.activeCellIndex >= 0 ? notebook.activeCellIndex : null;
        cellId = notebook.activeCell?.model.id ?? null;
      }
      return labPresence({
        status: current.status,
        displayName: current.displayName,
        document: context?.path ?? null,
        cell,
        cellId,
        server: ourServer,
      });
    };

    const collaboration = new Collaboration(baseUrl, current, presenceNow());
    collaboration.saveMuted = async (muted) => {
      current = { ...current, muted };
      if (settings) await settings.set("muted", muted).catch(() => {});
    };
    const report = () => collaboration.setPresence(presenceNow());
    const shell = app.shell as JupyterFrontEnd.IShell & { currentChanged?: { connect: (fn: () => void) => void } };
    shell.currentChanged?.connect(report);
    notebooks?.activeCellChanged.connect(report);
    notebooks?.currentChanged.connect(report);

    settings?.changed.connect(() => {
      current = readSettings(settings);
      collaboration.settings = current;
      report();
    });

    app.commands.addCommand(CommandIDs.setStatus, {
      label: "iAvicenne: Set My Status…",
      execute: async (args) => {
        let status = typeof args.status === "string" ? args.status : null;
        if (status === null) {
          const answer = await InputDialog.getText({ title: "Your status", text: current.status, placeholder: "reviewing the Q3 forecast" });
          if (!answer.button.accept) return;
          status = answer.value ?? "";
        }
        current = { ...current, status };
        collaboration.settings = current;
        if (settings) await settings.set("status", status).catch(() => {});
        report();
      },
    });
    app.commands.addCommand(CommandIDs.openDemo, {
      label: "iAvicenne: Open the Demo Page",
      execute: () => window.open(`${baseUrl}iavicenne/`, "_blank", "noopener"),
    });
    for (const command of [CommandIDs.setStatus, CommandIDs.openDemo]) palette?.addItem({ command, category: PALETTE_CATEGORY });

    // Connect once every plugin has activated, so the notifications and the file saving
    // that plugins requiring this one wire up are in place before the first room event.
    void app.started.then(() => collaboration.start());
    return collaboration;
  },
};
