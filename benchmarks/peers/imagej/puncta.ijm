// Synaptic puncta with Find Maxima (plain ImageJ 1.53).
// Argument: LIST|OUTDIR|SIGMA_UM|PROMINENCE
// Light Gaussian blur (µm, scaled), then Find Maxima with a prominence tuned on a pilot image.
// Per image: OUTDIR/name_maxima.csv with X,Y in pixels; "name<TAB>ms" lines in OUTDIR/times.tsv.
args = split(getArgument(), "|");
list = split(File.openAsString(args[0]), "\n");
out = args[1]; sigma = args[2]; prom = args[3];
setBatchMode(true);
times = "";
for (i = 0; i < list.length; i++) {
    if (lengthOf(list[i]) == 0) continue;
    f = split(list[i], "\t");
    name = f[0];
    open(f[1]);
    t0 = getTime();
    run("Gaussian Blur...", "sigma=" + sigma + " scaled");
    run("Find Maxima...", "prominence=" + prom + " strict exclude output=[Point Selection]");
    s = "X,Y\n";
    if (selectionType() != -1) {
        getSelectionCoordinates(xs, ys);
        for (k = 0; k < xs.length; k++) s = s + xs[k] + "," + ys[k] + "\n";
    }
    t = getTime() - t0;
    File.saveString(s, out + "/" + name + "_maxima.csv");
    times = times + name + "\t" + t + "\n";
    run("Close All");
}
File.saveString(times, out + "/times.tsv");
