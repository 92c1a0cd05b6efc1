export function start(section) { section.append("coming soon"); }
