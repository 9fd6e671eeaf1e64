/// Merges the children's releases (SPEC §7.5) and says where each process type and config var
/// came from.
struct ReleaseStage: BuildStage {
    var mode: ReleaseMode

    func run(_ children: [ChildRun], in context: BuildContext) throws -> Release {
        let (release, provenance) = mergeReleases(
            children.map { ($0.position, $0.release) }, mode: mode, stop: context.stop)
        try context.stop.check("while the releases were being merged")
        let log = context.log
        let withRelease = children.filter { $0.release != Release() }.count
        log.step(
            mode == .last
                ? "Release: the last buildpack's only (MULTIPACK_RELEASE=last)"
                : "Release merged from \(withRelease) of \(children.count) buildpacks")
        func origin(_ position: Int?) -> String {
            position.map { "\(children[$0 - 1].label) \(children[$0 - 1].displayName)" } ?? "?"
        }
        for (type, _) in release.processTypes {
            log.detail("process type \(type) from \(origin(provenance.processTypes[type]))")
        }
        for (name, _) in release.configVars {
            log.detail("config var \(name) from \(origin(provenance.configVars[name]))")
        }
        if !release.addons.isEmpty { log.detail("addons: \(release.addons.joined(separator: ", "))") }
        return release
    }
}
