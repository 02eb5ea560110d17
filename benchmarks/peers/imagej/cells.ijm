// Cells / motor-neuron somata / muscle fibers as a lab would segment them in plain ImageJ 1.53.
// Argument (one string, fields separated by "|"):
//   LIST|OUTDIR|MODE|SIGMA_UM|MIN_UM2|MAX_UM2
// LIST: text file, one "name<TAB>path" per line (calibrated ImageJ TIFFs, unit micron).
// MODE: "bright"  fluorescent objects on a dark background (GFP cells, ChAT somata)
//       "fibers"  dark fiber interiors enclosed by a bright border stain (laminin)
//       "he"      H&E RGB: 8-bit conversion + Default threshold of the darker (pink) fibers,
//                 because plain ImageJ has no Colour Deconvolution (a Fiji plugin)
// Per image: OUTDIR/name.csv (Analyze Particles results, calibrated), OUTDIR/name_labels.tif
// (Count Masks = label image), and a line "name<TAB>ms" in OUTDIR/times.tsv.
args = split(getArgument(), "|");
list = split(File.openAsString(args[0]), "\n");
out = args[1]; mode = args[2]; sigma = args[3]; minA = args[4]; maxA = args[5];
setBatchMode(true);
setOption("BlackBackground", true);
run("Set Measurements...", "area centroid perimeter feret's redirect=None decimal=4");
times = "";
for (i = 0; i < list.length; i++) {
    if (lengthOf(list[i]) == 0) continue;
    f = split(list[i], "\t");
    name = f[0];
    open(f[1]);
    t0 = getTime();
    id = getImageID();
    if (mode == "he") run("8-bit");
    // Gaussian blur with sigma in µm ("scaled" uses the file's calibration)
    run("Gaussian Blur...", "sigma=" + sigma + " scaled");
    if (mode == "bright") setAutoThreshold("Otsu dark");
    else setAutoThreshold("Default");
    run("Convert to Mask");
    if (mode == "bright") run("Fill Holes");
    run("Watershed");
    opts = "size=" + minA + "-" + maxA + " show=[Count Masks] display clear";
    if (mode != "bright") opts = opts + " exclude";
    run("Analyze Particles...", opts);
    t = getTime() - t0;
    saveAs("Results", out + "/" + name + ".csv");
    saveAs("Tiff", out + "/" + name + "_labels.tif");
    times = times + name + "\t" + t + "\n";
    run("Close All");
}
File.saveString(times, out + "/times.tsv");
