//! Device type and bot classification from the three uap-core results and
//! the user agent itself. The rules, in order (first that applies wins), are
//! documented on [`DeviceType`].

use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

use super::{DeviceType, RawDevice, RawOs, RawUserAgent};

/// Case-insensitive fragments of a user agent family that mean a crawler,
/// scraper, monitor or automated browser.
const BOT_FAMILY_FRAGMENTS: &[&str] = &[
    "bot",
    "spider",
    "crawl",
    "slurp",
    "scrape",
    "archiver",
    "indexer",
    "headless",
    "phantomjs",
    "lighthouse",
];

/// uap-core families of HTTP libraries and command-line clients
/// (case-insensitive). Application HTTP stacks such as `okhttp`, `Dalvik`
/// or `CFNetwork` are *not* here: they carry real users of mobile apps.
const BOT_FAMILIES: &[&str] = &[
    "curl",
    "wget",
    "python requests",
    "python-urllib",
    "python aiohttp",
    "go-http-client",
    "apache-httpclient",
    "java",
    "libwww-perl",
    "postmanruntime",
    "axios",
    "httpie",
    "guzzlehttp",
    "scrapy",
];

/// Case-insensitive prefixes of user agents sent by HTTP libraries that
/// uap-core does not name.
const BOT_PREFIXES: &[&str] = &[
    "python-",
    "python/",
    "node-fetch",
    "node/",
    "undici",
    "got (",
    "axios/",
    "ruby",
    "faraday",
    "restsharp",
    "insomnia/",
    "http_request",
    "libcurl",
];

/// Case-sensitive markers of TVs, set-top boxes, consoles, VR headsets and
/// watches, looked for in the user agent and the uap-core device family.
const OTHER_DEVICE_MARKERS: &[&str] = &[
    "SmartTV",
    "SMART-TV",
    "Smart TV",
    "SMART TV",
    "SmartTv",
    "HbbTV",
    "NetCast",
    "Web0S",
    "BRAVIA",
    "Android TV",
    "AndroidTV",
    "GoogleTV",
    "Google TV",
    "CrKey",
    "Chromecast",
    "Roku",
    "AppleTV",
    "Apple TV",
    "tvOS",
    "Inettv",
    "PlayStation",
    "Xbox",
    "Nintendo",
    "Oculus",
    "Quest 2",
    "Quest 3",
    "Quest Pro",
    "Apple Watch",
];

/// uap-core OS families of phones (and other handhelds). Android and iOS
/// are handled separately.
const MOBILE_OSES: &[&str] = &[
    "Windows Phone",
    "Windows Mobile",
    "Windows CE",
    "BlackBerry OS",
    "Symbian OS",
    "Symbian^3",
    "Symbian^3 Anna",
    "Symbian^3 Belle",
    "KaiOS",
    "Firefox OS",
    "Bada",
    "webOS",
    "MeeGo",
    "Maemo",
    "Sailfish",
    "Tizen",
    "HarmonyOS",
    "Ubuntu Touch",
];

/// uap-core OS families of desktop computers (besides everything whose name
/// starts with `Windows`, `Mac` or `Linux`).
const DESKTOP_OSES: &[&str] = &[
    "Ubuntu",
    "Kubuntu",
    "Debian",
    "Fedora",
    "Red Hat",
    "CentOS",
    "SUSE",
    "openSUSE",
    "Mint",
    "Arch Linux",
    "Gentoo",
    "Slackware",
    "Mandriva",
    "Chrome OS",
    "FreeBSD",
    "OpenBSD",
    "NetBSD",
    "Solaris",
    "SunOS",
    "BeOS",
    "Haiku",
    "OS/2",
    "AmigaOS",
];

static OTHER_DEVICES: LazyLock<AhoCorasick> =
    LazyLock::new(|| AhoCorasick::new(OTHER_DEVICE_MARKERS).expect("a handful of literal markers"));

/// [`BOT_FAMILY_FRAGMENTS`], searched for in one pass.
static BOT_FRAGMENTS: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(BOT_FAMILY_FRAGMENTS)
        .expect("a handful of literal fragments")
});

fn starts_with_ignore_ascii_case(haystack: &str, prefix: &str) -> bool {
    haystack
        .as_bytes()
        .get(..prefix.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(prefix.as_bytes()))
}

fn is_bot(ua: &str, agent: &RawUserAgent, device: &RawDevice) -> bool {
    device.family == "Spider"
        || BOT_FRAGMENTS.is_match(&agent.family)
        || BOT_FAMILIES
            .iter()
            .any(|f| agent.family.eq_ignore_ascii_case(f))
        || BOT_PREFIXES
            .iter()
            .any(|p| starts_with_ignore_ascii_case(ua, p))
}

fn is_other_device(ua: &str, os: &RawOs, device: &RawDevice) -> bool {
    let model = device.model.as_deref().unwrap_or("");
    OTHER_DEVICES.is_match(ua)
        || OTHER_DEVICES.is_match(&device.family)
        || device.brand.as_deref() == Some("Generic_Inettv")
        // Amazon Fire TV sticks: models AFTB, AFTMM, AFTKA...
        || (model.starts_with("AFT") && os.family == "Android")
        || matches!(os.family.as_str(), "WatchOS" | "ATV OS X" | "tvOS" | "Chromecast Linux")
}

/// A browser's user agent (as opposed to an app's HTTP stack): the
/// "Android without `Mobile` is a tablet" convention only holds for those.
fn is_browser_ua(ua: &str) -> bool {
    ua.contains("Safari") || ua.contains("Firefox") || ua.contains("Gecko")
}

fn is_tablet(ua: &str, os: &RawOs, device: &RawDevice) -> bool {
    let model = device.model.as_deref().unwrap_or("");
    device.family.contains("iPad")
        || model.contains("iPad")
        || device.family.starts_with("Kindle")
        || model.starts_with("Kindle")
        || device.family == "Generic Tablet"
        || device.brand.as_deref() == Some("Generic_Android_Tablet")
        || device.family.contains("PlayBook")
        || os.family == "BlackBerry Tablet OS"
        || ua.contains("Tablet")
        || (os.family == "Android"
            && is_browser_ua(ua)
            && !ua.contains("Mobile")
            && !ua.contains("Mobi"))
}

fn is_mobile(ua: &str, agent: &RawUserAgent, os: &RawOs, device: &RawDevice) -> bool {
    matches!(
        device.family.as_str(),
        "iPhone" | "iPod" | "iOS-Device" | "Generic Smartphone" | "Generic Feature Phone"
    ) || device.family.starts_with("iPhone")
        || device.family.starts_with("iPod")
        || matches!(os.family.as_str(), "iOS" | "Android")
        || MOBILE_OSES.contains(&os.family.as_str())
        || agent.family.starts_with("Opera Mini")
        || ua.contains("Mobile")
        || ua.contains("iPhone")
}

fn is_desktop(os: &RawOs, device: &RawDevice) -> bool {
    let family = os.family.as_str();
    let desktop_os = family.starts_with("Windows")
        || family.starts_with("Mac")
        || family.starts_with("Linux")
        || DESKTOP_OSES.contains(&family);
    desktop_os && matches!(device.family.as_str(), "Other" | "Mac")
}

/// The device type of a user agent (see [`DeviceType`] for the rules).
pub fn device_type(ua: &str, agent: &RawUserAgent, os: &RawOs, device: &RawDevice) -> DeviceType {
    if is_bot(ua, agent, device) {
        DeviceType::Bot
    } else if is_other_device(ua, os, device) {
        DeviceType::Other
    } else if is_tablet(ua, os, device) {
        DeviceType::Tablet
    } else if is_mobile(ua, agent, os, device) {
        DeviceType::Mobile
    } else if is_desktop(os, device) {
        DeviceType::Desktop
    } else {
        DeviceType::Other
    }
}

#[cfg(test)]
mod tests {
    use super::super::UserAgentParser;
    use super::*;
    use DeviceType::{Bot, Desktop, Mobile, Other, Tablet};

    /// (user agent, device type, browser) for real user agents of each kind.
    const CASES: &[(&str, DeviceType, Option<&str>)] = &[
        // Desktop browsers.
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", Desktop, Some("Chrome")),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0", Desktop, Some("Firefox")),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91", Desktop, Some("Edge")),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15", Desktop, Some("Safari")),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", Desktop, Some("Chrome")),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", Desktop, Some("Firefox")),
        ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0", Desktop, Some("Firefox")),
        ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", Desktop, Some("Chrome")),
        ("Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko", Desktop, Some("IE")),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 OPR/106.0.0.0", Desktop, Some("Opera")),
        ("Mozilla/5.0 (X11; FreeBSD amd64; rv:120.0) Gecko/20100101 Firefox/120.0", Desktop, Some("Firefox")),
        // Phones.
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1", Mobile, Some("Mobile Safari")),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1", Mobile, Some("Chrome Mobile iOS")),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36", Mobile, Some("Chrome Mobile")),
        ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36", Mobile, Some("Chrome Mobile")),
        ("Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36", Mobile, Some("Samsung Internet")),
        ("Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0", Mobile, Some("Firefox Mobile")),
        ("Mozilla/5.0 (Mobile; Windows Phone 8.1; Android 4.0; ARM; Trident/7.0; Touch; rv:11.0; IEMobile/11.0; NOKIA; Lumia 635) like iPhone OS 7_0_3 Mac OS X AppleWebKit/537 (KHTML, like Gecko) Mobile Safari/537", Mobile, Some("IE Mobile")),
        ("Opera/9.80 (J2ME/MIDP; Opera Mini/9.80 (S60; SymbOS; Opera Mobi/23.348; U; en) Presto/2.5.25 Version/10.54", Mobile, Some("Opera Mini")),
        ("Mozilla/5.0 (Mobile; LYF/F300B/LYF-F300B-001-01-15-130718-i;Android; rv:48.0) Gecko/48.0 Firefox/48.0 KAIOS/2.5", Mobile, Some("Firefox Mobile")),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/16.6;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]", Mobile, Some("Facebook")),
        ("Mozilla/5.0 (BB10; Touch) AppleWebKit/537.10+ (KHTML, like Gecko) Version/10.0.9.2372 Mobile Safari/537.10+", Mobile, Some("BlackBerry WebKit")),
        ("Mozilla/5.0 (Linux; Android 12; moto g(60)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36", Mobile, Some("Chrome Mobile")),
        ("Mozilla/5.0 (Linux; Android 13; 2201117TY Build/TKQ1.221114.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.144 Mobile Safari/537.36", Mobile, Some("Chrome Mobile WebView")),
        ("Dalvik/2.1.0 (Linux; U; Android 13; SM-A536B Build/TP1A.220624.014)", Mobile, Some("Android")),
        ("MyApp/1.2.3 CFNetwork/1410.0.3 Darwin/22.6.0", Mobile, Some("MyApp")),
        // Tablets.
        ("Mozilla/5.0 (iPad; CPU OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1", Tablet, Some("Mobile Safari")),
        ("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", Tablet, Some("Chrome")),
        ("Mozilla/5.0 (Linux; Android 12; SM-T870) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", Tablet, Some("Chrome")),
        ("Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/120.2.1 like Chrome/120.0.6099.230 Safari/537.36", Tablet, Some("Amazon Silk")),
        ("Mozilla/5.0 (Linux; Android 11; Lenovo TB-J606F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", Tablet, Some("Chrome")),
        ("Mozilla/5.0 (Android 14; Tablet; rv:121.0) Gecko/121.0 Firefox/121.0", Tablet, Some("Firefox Mobile")),
        ("Mozilla/5.0 (X11; U; Linux armv7l like Android; en-us) AppleWebKit/531.2+ (KHTML, like Gecko) Version/5.0 Safari/531.2+ Kindle/3.0+", Tablet, Some("Kindle")),
        ("Mozilla/5.0 (Linux; U; Android 4.2.2; en-us; Nexus 7 Build/JDQ39) AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Safari/534.30", Tablet, Some("Android")),
        // Crawlers, monitors, automation, HTTP libraries.
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", Bot, Some("Googlebot")),
        ("Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.216 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", Bot, Some("Googlebot")),
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", Bot, Some("bingbot")),
        ("Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", Bot, Some("YandexBot")),
        ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.0; +https://openai.com/gptbot)", Bot, Some("GPTBot")),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)", Bot, Some("Applebot")),
        ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", Bot, Some("FacebookBot")),
        ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", Bot, Some("Slackbot-LinkExpanding")),
        ("Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)", Bot, Some("UptimeRobot")),
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.109 Safari/537.36", Bot, Some("HeadlessChrome")),
        ("curl/8.4.0", Bot, Some("curl")),
        ("Wget/1.21.4", Bot, Some("Wget")),
        ("python-requests/2.31.0", Bot, Some("Python Requests")),
        ("Python-urllib/3.11", Bot, Some("Python-urllib")),
        ("Python/3.11 aiohttp/3.9.1", Bot, Some("Python aiohttp")),
        ("python-httpx/0.26.0", Bot, None),
        ("Go-http-client/1.1", Bot, Some("Go-http-client")),
        ("Apache-HttpClient/4.5.13 (Java/11.0.15)", Bot, Some("Apache-HttpClient")),
        ("Java/17.0.2", Bot, Some("Java")),
        ("libwww-perl/6.72", Bot, Some("libwww-perl")),
        ("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", Bot, None),
        ("axios/1.6.2", Bot, Some("axios")),
        ("PostmanRuntime/7.36.0", Bot, Some("PostmanRuntime")),
        ("Scrapy/2.11.0 (+https://scrapy.org)", Bot, Some("Scrapy")),
        // TVs, consoles, streaming sticks, headsets, watches.
        ("Mozilla/5.0 (SMART-TV; LINUX; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) 76.0.3809.146/6.0 TV Safari/537.36", Other, Some("Safari")),
        ("Mozilla/5.0 (Web0S; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/79.0.3945.79 Safari/537.36 WebAppManager", Other, Some("Chrome")),
        ("Mozilla/5.0 (Linux; Android 10; BRAVIA 4K UR2 Build/QTG3.200305.006.S292) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.5735.196 Safari/537.36", Other, Some("Chrome")),
        ("Mozilla/5.0 (Linux; Android 9; AFTMM Build/PS7633; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.230 Mobile Safari/537.36", Other, Some("Chrome Mobile WebView")),
        ("Roku/DVP-9.10 (519.10E04111A)", Other, Some("Roku")),
        ("Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.0 Safari/605.1.15", Other, Some("Safari")),
        ("Mozilla/5.0 (PlayStation 4 5.55) AppleWebKit/601.2 (KHTML, like Gecko)", Other, None),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox One) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edge/44.18363.8131", Other, Some("Edge")),
        ("Mozilla/5.0 (Nintendo Switch; WifiWebAuthApplet) AppleWebKit/606.4 (KHTML, like Gecko) NF/6.0.1.15.4 NintendoBrowser/5.1.0.20393", Other, None),
        ("AppleTV11,1/11.1", Other, None),
        ("Mozilla/5.0 (X11; Linux armv7l) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.5735.90 Safari/537.36 CrKey/1.56.500000 DeviceType/AndroidTV", Other, Some("Chrome")),
        ("Mozilla/5.0 (Linux; U; Android 9; en-us; SHIELD Android TV Build/PPR1.180610.011) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.0.0 Mobile Safari/537.36", Other, Some("Chrome Mobile WebView")),
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 OculusBrowser/31.0", Other, Some("Oculus Browser")),
        ("atc/1.0 watchOS/5.1.3 model/Watch3,4 hwp/t8004 build/16S535 (6; dt:156)", Other, Some("Apple Watch App")),
        // Nothing known.
        ("", Other, None),
        ("foo", Other, None),
        // App HTTP stacks are not bots.
        ("okhttp/4.12.0", Other, Some("okhttp")),
    ];

    #[test]
    fn real_user_agents() {
        let parser = UserAgentParser::global();
        let mut wrong = Vec::new();
        for &(ua, expected, browser) in CASES {
            let parsed = parser.parse(ua);
            if parsed.device_type != expected
                || parsed.browser.as_deref() != browser
                || parsed.is_bot != (expected == Bot)
            {
                wrong.push(format!(
                    "{ua}\n    expected {expected} {browser:?}, got {} {:?} ({:?})",
                    parsed.device_type, parsed.browser, parsed
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn summary_fields() {
        let parsed = UserAgentParser::global().parse(
            "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
        );
        assert_eq!(parsed.browser.as_deref(), Some("Samsung Internet"));
        assert_eq!(parsed.browser_version.as_deref(), Some("23.0"));
        assert_eq!(parsed.os.as_deref(), Some("Android"));
        assert_eq!(parsed.os_version.as_deref(), Some("13"));
        assert_eq!(parsed.device_brand.as_deref(), Some("Samsung"));
        assert_eq!(parsed.device_model.as_deref(), Some("SM-S911B"));
        assert_eq!(parsed.device_family.as_deref(), Some("Samsung SM-S911B"));
        let parsed = UserAgentParser::global().parse(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
        );
        assert_eq!(parsed.browser_version.as_deref(), Some("17.2"));
        assert_eq!(parsed.os.as_deref(), Some("Mac OS X"));
        assert_eq!(parsed.os_version.as_deref(), Some("10.15.7"));
    }
}
