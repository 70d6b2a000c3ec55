/** The status bar plugin: the connection's state and how many people are online. */

import type { JupyterFrontEnd, JupyterFrontEndPlugin } from "@jupyterlab/application";
import { IStatusBar } from "@jupyterlab/statusbar";
import { Widget } from "@lumino/widgets";

import type { Collaboration } from "../collaboration";
import type { RoomsPanel } from "../panel";
import { ICollaboration, IRoomsPanel } from "../tokens";

/** The status bar item; a click opens the rooms panel. */
class StatusItem extends Widget {
  constructor(
    private readonly collaboration: Collaboration,
    onClick: () => void,
  ) {
    super();
    this.addClass("iav-lab-status");
    this.node.title = "iAvicenne: open the rooms panel";
    this.node.addEventListener("click", onClick);
    collaboration.changed.connect(() => this.render(), this);
    this.render();
  }

  render(): void {
    const state = this.collaboration.state;
    const online = this.collaboration.online;
    this.node.dataset.state = state;
    this.node.textContent = state === "online" ? `iAvicenne: ${online} online` : `iAvicenne: ${state}`;
  }
}

export const statusBarPlugin: JupyterFrontEndPlugin<void> = {
  id: "iavicenne-lab:status-bar",
  description: "iAvicenne's connection state and the people online in the status bar",
  autoStart: true,
  requires: [ICollaboration, IRoomsPanel],
  // Notebook 7 has no status bar: there the plugin does nothing
  optional: [IStatusBar],
  activate: (app: JupyterFrontEnd, collaboration: Collaboration, panel: RoomsPanel, statusBar: IStatusBar | null): void => {
    if (!statusBar) return;
    const item = new StatusItem(collaboration, () => app.shell.activateById(panel.id));
    statusBar.registerStatusItem("iavicenne-lab:status", { item, align: "left", rank: 10 });
  },
};
