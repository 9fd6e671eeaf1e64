import Testing

@testable import MultipackKit

@Suite struct BuildpackListTests {
    @Test func everyFormIsRecognised() throws {
        let list = """
            https://github.com/heroku/heroku-buildpack-nodejs.git#v200
            http://example.com/bp.git
            git://example.com/bp.git#main
            ssh://git@example.com/org/bp.git
            git@github.com:org/bp.git#0123abc
            file:///srv/bp#beta
            /opt/buildpacks/local
            ./vendor/bp
            ../shared/bp#v1
            https://example.com/bp.tgz
            https://example.com/bp.tar.gz?token=abc sha256=\(String(repeating: "a", count: 64))
            file:///tmp/bp.tar.xz
            https://example.com/bp.txz
            https://example.com/bp.tar
            heroku/python
            urn:buildpack:heroku/nodejs
            """
        let entries = try BuildpackList.parse(list)
        #expect(
            entries.map(\.reference) == [
                .git(url: "https://github.com/heroku/heroku-buildpack-nodejs.git", ref: "v200"),
                .git(url: "http://example.com/bp.git", ref: nil),
                .git(url: "git://example.com/bp.git", ref: "main"),
                .git(url: "ssh://git@example.com/org/bp.git", ref: nil),
                .git(url: "git@github.com:org/bp.git", ref: "0123abc"),
                .git(url: "file:///srv/bp", ref: "beta"),
                .directory(path: "/opt/buildpacks/local"),
                .directory(path: "./vendor/bp"),
                .git(url: "../shared/bp", ref: "v1"),
                .archive(url: "https://example.com/bp.tgz"),
                .archive(url: "https://example.com/bp.tar.gz?token=abc"),
                .archive(url: "file:///tmp/bp.tar.xz"),
                .archive(url: "https://example.com/bp.txz"),
                .archive(url: "https://example.com/bp.tar"),
                .registry(namespace: "heroku", name: "python"),
                .registry(namespace: "heroku", name: "nodejs"),
            ])
        #expect(entries.map(\.line) == Array(1...16))
        #expect(entries[10].sha256 == String(repeating: "a", count: 64))
    }

    @Test func bomCRLFCommentsAndBlanks() throws {
        let entries = try BuildpackList.parse(
            "\u{FEFF}# first\r\n\r\n  heroku/python   # trailing\r\n\t\r\nhttps://h/x.git#main#frag \r\n")
        #expect(entries.map(\.line) == [3, 5])
        #expect(entries[0].reference == .registry(namespace: "heroku", name: "python"))
        // The last # in a URL is the ref separator.
        #expect(entries[1].reference == .git(url: "https://h/x.git#main", ref: "frag"))
    }

    @Test(arguments: [
        ("ftp://h/x.git", "not a buildpack reference"),
        ("just words here", "is not an option"),
        ("https://h/x.git#", "not a buildpack reference"),
        ("https:///x.git", "not a buildpack reference"),
        ("https://h/x.tgz#v1", "not a buildpack reference"),
        ("https://h/x.tgz sha256=abc", "64 hex digits"),
        ("https://h/x.git sha256=\(String(repeating: "b", count: 64))", "pins archives and registry names only"),
        ("heroku/python color=red", "unknown option `color`"),
        ("a/b/c", "not a buildpack reference"),
    ])
    func badLinesFailWithTheirLineNumber(line: String, reason: String) {
        #expect {
            try BuildpackList.parse("# comment\n\n\(line)\n")
        } throws: { error in
            guard let error = error as? BuildpackListError else { return false }
            return error.line == 3 && error.reason.contains(reason)
        }
    }

    @Test func credentialsAreMaskedInErrors() {
        do {
            _ = try BuildpackList.parse("https://u:t0ken@h/x.tgz?sig=s3cret#v1\n")
            Issue.record("expected an error")
        } catch {
            #expect(error.text == "https://***@h/x.tgz?sig=***#v1")
        }
    }
}

@Suite struct ReleaseTests {
    @Test func parsesTheShapesBuildpacksPrint() throws {
        let text = """
            --- # release
            addons:
              - heroku-postgresql:hobby-dev
            - 'ignored?'
            """
        #expect(throws: ReleaseError.self) { try Release.parse(text) }

        let release = try Release.parse(
            """
            ---
            addons: [heroku-redis, "papertrail"]
            config_vars:
              LANG: en_US.UTF-8
              QUOTED: "a \\"b\\" #c"
              SINGLE: 'it''s'
            default_process_types:
              web: bundle exec puma -p $PORT   # comment
              worker: >
                python worker.py
                --fast
            extra: ignored
            """)
        #expect(release.addons == ["heroku-redis", "papertrail"])
        #expect(release.configVars.map(\.key) == ["LANG", "QUOTED", "SINGLE"])
        #expect(release.configVars.map(\.value) == ["en_US.UTF-8", "a \"b\" #c", "it's"])
        #expect(release.processTypes.map(\.value) == ["bundle exec puma -p $PORT", "python worker.py --fast\n"])
        #expect(try Release.parse("") == Release())
        #expect(try Release.parse("--- {}\n") == Release())
        #expect(try Release.parse("---\ndefault_process_types:\n") == Release())
    }

    @Test(arguments: ["just a sentence", "- a\n- b", "key: [unclosed", "web: x\n  bad: indent", "\"open: x"])
    func rejectsWhatIsNotAMapping(_ text: String) {
        #expect(throws: ReleaseError.self) { try Release.parse(text) }
    }

    @Test func mergeIsKeyByKeyAndLastWins() throws {
        let node = try Release.parse(
            "addons: [a, b]\ndefault_process_types:\n  web: node\n  assets: build\nconfig_vars:\n  X: '1'\n")
        let python = try Release.parse("addons: [b, c]\ndefault_process_types:\n  web: gunicorn\n  worker: celery\n")
        let (merged, provenance) = mergeReleases([(1, node), (2, python)], mode: .merge)
        #expect(merged.processTypes.map(\.key) == ["web", "assets", "worker"])
        #expect(merged.processTypes.map(\.value) == ["gunicorn", "build", "celery"])
        #expect(merged.addons == ["a", "b", "c"])
        #expect(provenance.processTypes == ["web": 2, "assets": 1, "worker": 2])
        let (last, _) = mergeReleases([(1, node), (2, python)], mode: .last)
        #expect(last == python)
        // What we print reads back the same.
        #expect(try Release.parse(merged.yaml) == merged)
        #expect(Release().yaml == "--- {}\n")
    }
}

@Suite struct EnvironmentTests {
    @Test func pathListsAreUnions() {
        #expect(
            BuildEnvironment.unionPath("/new:/usr/bin:/bin", keeping: "/a:/usr/bin:/b") == "/new:/usr/bin:/bin:/a:/b")
        var change = EnvironmentChange()
        change.set = ["PATH": "/only", "FOO": "bar", "LD_LIBRARY_PATH": "/l2"]
        change.unset = ["GONE", "MANPATH"]
        let result = BuildEnvironment.apply(
            change, to: ["PATH": "/a:/b", "GONE": "x", "MANPATH": "/m", "LD_LIBRARY_PATH": "/l1"])
        #expect(result == ["PATH": "/only:/a:/b", "FOO": "bar", "MANPATH": "/m", "LD_LIBRARY_PATH": "/l2:/l1"])
    }

    @Test func exportIsSourcedAsADiff() throws {
        let temp = try TempDir("export")
        try temp.write("export", "export NEW='a b'\nunset OLD\nexport SAME=1\ncd /\n")
        let change = try BuildEnvironment.sourceExport(
            temp.path + "/export", environment: ["PATH": "/usr/bin:/bin", "OLD": "x", "SAME": "1"], in: temp.path)
        #expect(change.set == ["NEW": "a b"])
        #expect(change.unset == ["OLD"])
    }

    @Test func combinedExportReproducesTheChanges() {
        let script = BuildEnvironment.exportScript(base: ["A": "1", "B": "2"], final: ["A": "1", "C": "it's"])
        #expect(script == "export C='it'\\''s'\nunset B\n")
    }

    @Test func booleansAcceptZeroAsOff() throws {
        for on in ["1", "true", "YES", "On"] { #expect(try Settings.boolean("X", on)) }
        for off in ["0", "false", "No", "OFF", "", nil] { #expect(try !Settings.boolean("X", off)) }
        expectUsageError { try Settings.boolean("X", "maybe") }
        let settings = try Settings(
            configVars: ["MULTIPACK_RELEASE": "LAST", "MULTIPACK_FETCH_TIMEOUT": "12"], environment: [:])
        #expect(settings.release == .last && settings.fetchTimeout == 12 && settings.hooks == .multipack)
        expectUsageError { try Settings(configVars: ["MULTIPACK_HOOKS": "both"], environment: [:]) }
        expectUsageError {
            try Settings(configVars: ["MULTIPACK_FETCH_TIMEOUT": "soon"], environment: [:])
        }
    }
}

/// A child's `export` is always sourced by bash (SPEC §7.2): whatever it writes means what bash
/// makes of it, defaults, commands and carriage returns included.
@Suite struct ExportSourcingTests {
    /// `n` and `name` too: a name the sourcing shell might use for itself is still the build's.
    static let base = [
        "PATH": "/usr/bin:/bin", "HOME": "/app", "OLD": "x", "BUILD": "/tmp/build_1", "n": "1", "name": "2",
    ]

    static let cases: [(text: String, set: [String: String], unset: Set<String>)] = [
        (
            "export PATH=\"$BUILD/.heroku/python/bin\":$PATH\n# comment\n\nexport A='single $PATH'\n",
            ["PATH": "/tmp/build_1/.heroku/python/bin:/usr/bin:/bin", "A": "single $PATH"], []
        ),
        (
            "export X=${HOME}/bin:${PATH}\nexport Y=$X\nunset OLD\n",
            ["X": "/app/bin:/usr/bin:/bin", "Y": "/app/bin:/usr/bin:/bin"], ["OLD"]
        ),
        ("export A=${UNSET:-default}\nexport B=\"$(echo made)\"\n", ["A": "default", "B": "made"], []),
        ("export A=1; export B=2\nif true; then export C=3; fi\n", ["A": "1", "B": "2", "C": "3"], []),
        // bash keeps a CR in the value: what a CRLF export means on Heroku too.
        ("export LANG=en_US.UTF-8\r\n", ["LANG": "en_US.UTF-8\r"], []),
    ]

    @Test(arguments: 0..<cases.count) func bashDecidesWhatAnExportMeans(_ index: Int) throws {
        let (text, set, unset) = Self.cases[index]
        let temp = try TempDir("export")
        try temp.write("export", text)
        let change = try BuildEnvironment.sourceExport(temp.path + "/export", environment: Self.base, in: temp.path)
        #expect(change.set == set)
        #expect(change.unset == unset)
    }
}

/// What bash's `declare -px` prints is read back exactly, in both quotings it uses (`"…"` for
/// printable values, `$'…'` for any other), whatever the locale and whatever the bytes.
@Suite struct DeclaredVariablesTests {
    /// Values a build could export: every quoting character, line ends, control bytes, UTF-8.
    static let values: [String] = [
        "plain", "", "a b", "a\"b$c`d\\e'f", "line1\nline2", "tab\there", "cr\r", "\u{1}\u{7}\u{1b}\u{7f}",
        "café ☕ 𝄞", "\\n is not a newline", "$'not' \"quoted\"", "]=(", "trailing backslash\\",
        String((1...127).map { Character(Unicode.Scalar(UInt8($0))) }),
    ]

    @Test(arguments: ["C", "C.UTF-8"]) func everyValueComesBackAsBashHasIt(_ locale: String) throws {
        let temp = try TempDir("declare")
        var text = ""
        for (index, value) in Self.values.enumerated() {
            text += "export V\(index)=\(BuildEnvironment.shellQuoted(value))\n"
        }
        try temp.write("export", text)
        let change = try BuildEnvironment.sourceExport(
            temp.path + "/export", environment: ["PATH": "/usr/bin:/bin", "LANG": locale, "LC_ALL": locale],
            in: temp.path)
        for (index, value) in Self.values.enumerated() {
            #expect(change.set["V\(index)"] == value, "value \(index) in \(locale)")
        }
        #expect(change.set.count == Self.values.count)
    }

    @Test func arraysAndValuelessExportsAreNotInTheEnvironment() throws {
        let text = """
            declare -x ONE="1"
            declare -ax LIST=([0]="a" [1]=$'b\\tc')
            declare -Ax MAP=(["a]b"]="1" [plain]=$'x\\ty' )
            declare -x NOVALUE
            declare -rx RO="r"

            """
        let parsed = DeclaredVariables.parse(Array(text.utf8)[...])
        #expect(parsed == ["ONE": "1", "RO": "r"])
        #expect(DeclaredVariables.parse(Array("declare -x BROKEN=\"no end\n".utf8)[...]) == nil)
        #expect(DeclaredVariables.parse(Array("not declare output\n".utf8)[...]) == nil)
    }

    @Test func anExportThatRedefinesDeclareIsStillRead() throws {
        let temp = try TempDir("declare")
        try temp.write("export", "declare() { echo lies; }\nprintf() { echo lies; }\nexport REAL=1\n")
        let change = try BuildEnvironment.sourceExport(
            temp.path + "/export", environment: ["PATH": "/usr/bin:/bin"], in: temp.path)
        #expect(change.set == ["REAL": "1"])
    }
}
